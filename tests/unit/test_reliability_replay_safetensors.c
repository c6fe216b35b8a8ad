/* The fuzz_safetensors corpus (seeds and past findings) replayed as a ctest; see test_reliability_replay.h. */
#include "fuzz/fuzz_safetensors.c"
#define REPLAY_TARGET "fuzz_safetensors"
#include "test_reliability_replay.h"
