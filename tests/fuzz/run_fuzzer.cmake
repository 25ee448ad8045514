# Runs one fuzzer for a bounded time on a fresh copy of its seed corpus, for
# CTest: cmake -DFUZZER=... -DSEEDS=... -DWORK=... -DDICT=... -DSECONDS=... -P run_fuzzer.cmake
#
# The copy keeps the inputs the run adds out of the source tree; crashes,
# leaks and timeouts land in WORK/artifacts/ (crash-<sha1>, leak-..., timeout-...)
# and fail the test.

foreach(var FUZZER SEEDS WORK DICT SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: ${var} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(GLOB seeds ${SEEDS}/*)
file(COPY ${seeds} DESTINATION ${WORK}/corpus)

# -timeout: one input taking 10 s is a hang; -rss_limit_mb: a runaway
# allocation is a finding, not a dead machine. -print_final_stats gives the
# exec/s figure in the test log.
execute_process(
  COMMAND ${FUZZER} ${WORK}/corpus
    -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048 -max_len=8192
    -dict=${DICT} -artifact_prefix=${WORK}/artifacts/ -print_final_stats=1
  RESULT_VARIABLE rc
  ERROR_VARIABLE err ECHO_ERROR_VARIABLE)
if(NOT rc EQUAL 0)
  # What failed and the input that did it, last: a log cut in the middle
  # (libFuzzer prints thousands of lines) still shows them.
  string(REGEX MATCHALL "[^\n]*(\\*\\*\\* fuzz invariant|ERROR: |SUMMARY: )[^\n]*" why "${err}")
  list(JOIN why "\n" why)
  file(GLOB found ${WORK}/artifacts/*)
  set(inputs "")
  foreach(f ${found})
    file(READ ${f} bytes HEX LIMIT 8192) # (-max_len: the whole input)
    string(APPEND inputs "\n${f} (hex):\n${bytes}")
  endforeach()
  message(FATAL_ERROR "${FUZZER} failed (exit ${rc}):\n${why}\nreproducers:${inputs}\n"
    "replay one with: ${FUZZER} <file>")
endif()
