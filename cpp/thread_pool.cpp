#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace fusedce {
namespace {

struct Job {
  const std::function<void(int64_t)>* fn;
  int64_t n;
  int max_helpers;                  // workers allowed besides the caller
  std::atomic<int64_t> next{0};     // next index to claim
  std::atomic<int64_t> finished{0}; // indices completed
  int helpers = 0;                  // guarded by Pool::mu
};

class Pool {
 public:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker(); });
  }
  // The pool lives for the whole process (it is never destroyed: joining threads during static
  // destruction at exit is a known source of hangs in addons).
  int workers() const { return int(threads_.size()); }

  void run(Job& job) {
    if (job.max_helpers > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(&job);
      cv_work_.notify_all();
    }
    drain(job);
    if (job.max_helpers > 0) {
      std::unique_lock<std::mutex> lk(mu_);
      remove(job);
      // Wait until helpers that claimed indices have finished them.
      cv_done_.wait(lk, [&] { return job.finished.load() == job.n && job.helpers == 0; });
    }
  }

 private:
  static void drain(Job& job) {
    for (;;) {
      const int64_t i = job.next.fetch_add(1);
      if (i >= job.n) return;
      (*job.fn)(i);
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
      cv_work_.wait(lk, [&] {
        for (Job* j : queue_)
          if (j->helpers < j->max_helpers && j->next.load() < j->n) return (job = j) != nullptr;
        return false;
      });
      ++job->helpers;
      lk.unlock();
      drain(*job);
      lk.lock();
      --job->helpers;
      if (job->next.load() >= job->n) remove(*job);
      cv_done_.notify_all();
    }
  }

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
  if (threads == 1) {
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
