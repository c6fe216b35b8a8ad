/* The fuzz_json_config corpus (seeds and past findings) replayed as a ctest; see test_reliability_replay.h. */
#include "fuzz/fuzz_json_config.c"
#define REPLAY_TARGET "fuzz_json_config"
#include "test_reliability_replay.h"
