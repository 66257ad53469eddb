/* frame_icount.c — 64-byte frames decoded from a contiguous buffer in a tight loop, for
 * callgrind to count the instructions one frame costs (run it for N and 2N frames and divide
 * the difference by N, so start-up cancels out):
 *
 *     for n in 100000 200000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
 *         build/release/frame_icount MODE $n; done   (then (Ir(2N) - Ir(N)) / N)
 *
 * MODE: line, delimiter, length (bp_frame_next: the decoder, the view and its release),
 * line-range, delimiter-range, length-range (bp_frame_next_range: the decoder alone), slice
 * (bp_buf_read_slice + bp_buf_release of 64 bytes: what a view costs, without a decoder). */
#include "bufpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME 64
#define BATCH 1024 /* frames in the buffer, decoded again and again */

int main(int argc, char **argv)
{
    static const char *modes[] = {
        "line", "delimiter", "length", "line-range", "delimiter-range", "length-range", "slice"};
    int mode = -1;
    for (int i = 0; argc == 3 && i < 7; i++)
        if (strcmp(argv[1], modes[i]) == 0)
            mode = i;
    if (mode < 0) {
        fprintf(stderr,
                "usage: %s line|delimiter|length|line-range|delimiter-range|length-range|slice "
                "FRAMES\n",
                argv[0]);
        return 2;
    }
    long frames = strtol(argv[2], NULL, 0);
    bp_pool *pool = bp_pool_default();
    bp_buf *in = bp_buf_new(pool, (size_t)FRAME * BATCH, 0);
    uint8_t frame[FRAME];
    memset(frame, 'a', sizeof frame);
    bp_frame_decoder d;
    int kind = mode == 6 ? 0 : mode % 3;
    if (kind == 2) { /* a 2-byte length and 62 bytes of body */
        bp_frame_length_config cfg = {.max_frame = 1024, .field_size = 2, .strip = 2};
        bp_frame_length_init(&d, &cfg);
        frame[0] = 0;
        frame[1] = FRAME - 2;
    } else if (kind == 1) {
        static const bp_frame_delimiter crlf = {"\r\n", 2};
        bp_frame_delimiter_init(&d, 1024, &crlf, 1, 0);
        frame[FRAME - 2] = '\r';
        frame[FRAME - 1] = '\n';
    } else {
        bp_frame_line_init(&d, 1024, 0);
        frame[FRAME - 1] = '\n';
    }
    for (int i = 0; i < BATCH; i++)
        bp_buf_write_bytes(in, frame, sizeof frame);
    size_t writer = bp_buf_writer_index(in);
    long done = 0;
    while (done < frames) {
        bp_buf_set_index(in, 0, writer);
        for (int i = 0; i < BATCH && done < frames; i++, done++) {
            bp_buf *view = NULL;
            size_t index = 0, len = 0;
            int r;
            if (mode == 6)
                r = (view = bp_buf_read_slice(in, FRAME)) != NULL ? BP_OK : BP_ENOMEM;
            else if (mode >= 3)
                r = bp_frame_next_range(&d, in, &index, &len);
            else
                r = bp_frame_next(&d, in, &view);
            if (r != BP_OK) {
                fprintf(stderr, "frame %ld: %s\n", done, bp_strerror(r));
                return 1;
            }
            __asm__ volatile("" : : "r"(view), "r"(index), "r"(len) : "memory");
            if (view != NULL)
                bp_buf_release(view);
        }
    }
    bp_buf_release(in);
    return 0;
}
