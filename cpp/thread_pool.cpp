#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fusedce {
namespace {

struct Job {
  const std::function<void(int64_t)>* fn;
  std::atomic<bool> failed{false};  // an fn(i) threw: the rest are skipped, the first error rethrown
  std::exception_ptr error;         // guarded by Pool::mu
  int64_t n;
  int max_helpers;                  // workers allowed besides the caller
  std::atomic<int64_t> next{0};     // next index to claim
  std::atomic<int64_t> finished{0}; // indices completed
  int helpers = 0;                  // guarded by Pool::mu
};

class Pool {
 public:
  // A thread that cannot be created (std::system_error, or bad_alloc) is left out: the pool runs
  // with the workers it has, down to none (the caller alone).
  explicit Pool(int workers) {
    for (int i = 0; i < workers; ++i) {
      try {
        threads_.emplace_back([this] { worker(); });
      } catch (...) {
        break;
      }
    }
  }
  // The pool lives for the whole process (it is never destroyed: joining threads during static
  // destruction at exit is a known source of hangs in addons).
  int workers() const { return int(threads_.size()); }

  void run(Job& job) {
    if (job.max_helpers > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(&job);
      posted_.fetch_add(1);
      cv_work_.notify_all();
    }
    drain(job);
    if (job.max_helpers > 0) {
      std::unique_lock<std::mutex> lk(mu_);
      remove(job);
      // Wait until helpers that claimed indices have finished them. They are at most one task
      // behind, so the caller first polls for a short while (kSpin) before sleeping: a sleep costs
      // a futex wake-up, tens of µs on a VM, as much as a whole small call (1 × 128256).
      const auto done = [&] { return job.finished.load() == job.n && job.helpers == 0; };
      for (auto t0 = Clock::now(); !done() && Clock::now() - t0 < kSpin;) {
        lk.unlock();
        relax();
        lk.lock();
      }
      cv_done_.wait(lk, done);
    }
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  // Exception-safe: an fn(i) that throws (on the caller or a worker) marks the job failed and
  // keeps its exception; the indices claimed after it are counted but not run, so the caller's
  // wait ends as usual and it rethrows once no helper touches the job (which lives on its stack).
  void drain(Job& job) {
    for (;;) {
      const int64_t i = job.next.fetch_add(1);
      if (i >= job.n) return;
      if (!job.failed.load(std::memory_order_relaxed)) {
        try {
          (*job.fn)(i);
        } catch (...) {
          std::lock_guard<std::mutex> lk(mu_);
          if (!job.error) job.error = std::current_exception();
          job.failed.store(true);
        }
      }
      job.finished.fetch_add(1);
    }
  }
  void remove(Job& job) {  // caller holds mu_
    auto it = std::find(queue_.begin(), queue_.end(), &job);
    if (it != queue_.end()) queue_.erase(it);
  }
  void worker() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      Job* job = nullptr;
      const auto pick = [&] {
        for (Job* j : queue_)
          if (j->helpers < j->max_helpers && j->next.load() < j->n) return (job = j) != nullptr;
        return false;
      };
      if (!pick()) {
        // Before sleeping, poll for a new job for a short while (kSpin): calls come back to back
        // (forward then backward, a training or benchmark loop), and a worker that is still
        // awake joins the next one at once instead of after a futex wake-up.
        const uint64_t seen = posted_.load();
        lk.unlock();
        for (auto t0 = Clock::now(); posted_.load() == seen && Clock::now() - t0 < kSpin;) relax();
        lk.lock();
        cv_work_.wait(lk, pick);
      }
      ++job->helpers;
      lk.unlock();
      drain(*job);
      lk.lock();
      --job->helpers;
      if (job->next.load() >= job->n) remove(*job);
      cv_done_.notify_all();
    }
  }

  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::microseconds kSpin{100};
  static void relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }
  std::atomic<uint64_t> posted_{0};  // jobs ever queued: a worker's poll watches it change
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  std::deque<Job*> queue_;
};

Pool& pool() {
  static Pool* p = new Pool(hardware_threads() - 1);
  return *p;
}

}  // namespace

int hardware_threads() {
  static const int n = std::max(1, int(std::thread::hardware_concurrency()));
  return n;
}

void parallel_for(int64_t n, int max_threads, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = int(std::min<int64_t>({int64_t(std::max(1, max_threads)), n, int64_t(hardware_threads())}));
  if (threads == 1 || pool().workers() == 0) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  job.max_helpers = std::min(threads - 1, pool().workers());
  pool().run(job);
}

}  // namespace fusedce
