/* The fuzz_gguf corpus (seeds and past findings) replayed as a ctest; see test_reliability_replay.h. */
#include "fuzz/fuzz_gguf.c"
#define REPLAY_TARGET "fuzz_gguf"
#include "test_reliability_replay.h"
