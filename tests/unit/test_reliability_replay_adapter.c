/* The fuzz_adapter corpus (seeds and past findings) replayed as a ctest; see test_reliability_replay.h. */
#include "fuzz/fuzz_adapter.c"
#define REPLAY_TARGET "fuzz_adapter"
#define REPLAY_HAS_INIT 1
#include "test_reliability_replay.h"
