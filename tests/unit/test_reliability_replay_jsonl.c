/* The fuzz_jsonl corpus (seeds and past findings) replayed as a ctest; see test_reliability_replay.h. */
#include "fuzz/fuzz_jsonl.c"
#define REPLAY_TARGET "fuzz_jsonl"
#define REPLAY_HAS_INIT 1
#include "test_reliability_replay.h"
