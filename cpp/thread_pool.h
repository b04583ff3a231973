// A process-wide pool of worker threads, created once (lazily) and reused by every call.
// parallel_for is safe to call from several threads at once (e.g. concurrent async calls on the
// libuv pool): each call is a job in a queue; workers help the oldest job that still has work and
// has not reached its thread limit; the calling thread always works on its own job too, so a
// call makes progress even when every worker is busy elsewhere. Waits poll for up to 100 µs
// before sleeping (a caller for its helpers' last tasks, an idle worker for the next job), so
// small back-to-back calls do not pay a futex wake-up each.
#pragma once

#include <cstdint>
#include <functional>

namespace fusedce {

// Number of hardware threads (≥ 1).
int hardware_threads();

// Runs fn(i) for every i in [0, n) using at most max_threads threads (the caller included).
// Which thread runs which i is unspecified; callers make results independent of it.
void parallel_for(int64_t n, int max_threads, const std::function<void(int64_t)>& fn);

}  // namespace fusedce
