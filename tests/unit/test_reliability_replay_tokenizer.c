/* The fuzz_tokenizer corpus (seeds and past findings) replayed as a ctest; see test_reliability_replay.h. */
#include "fuzz/fuzz_tokenizer.c"
#define REPLAY_TARGET "fuzz_tokenizer"

#include "test_reliability_replay.h"
