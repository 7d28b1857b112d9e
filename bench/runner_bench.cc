// Runner benchmark: the release engine and the process service manager, each
// beside a baseline measured in the same run:
//  1. Runner overhead per node: one sequential flow of N no-op nodes (each
//     reads the previous node's output through ${refs...}), from Start until
//     Wait says it concluded, beside the same N executor calls made directly
//     in a loop. Target: under 1 ms a node.
//  2. R concurrent runs of a 20-node flow: time until all concluded and
//     runs/s, beside the same R runs started one after another.
//  3. Supervised services: S tiny python3 TCP servers deployed at once
//     through the process ServiceManager (TCP health check), beside the same
//     S processes started directly with the launcher; the RSS of this
//     process (the supervising side) before and after, the children's total
//     RSS and PSS, and the CPU time of 2 s of supervision. Everything is
//     removed at the end and checked gone by pid.
// Parts 1 and 2 print medians over --rounds rounds (default 5).
// Usage: runner_bench [--nodes N] [--runs N] [--services N] [--rounds N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "daemon/runner/engine.h"
#include "daemon/runtime/launcher.h"
#include "daemon/runtime/services.h"
#include "bench/bench_util.h"
#include "tests/support/temp_dir.h"

namespace {

using gitopsd::bench::MsSince;
using gitopsd::bench::Percentile;

using gitopsd::json::Value;
using gitopsd::test::TempDir;
using namespace gitopsd::runner;
using namespace gitopsd::runtime;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kConcurrentFlowNodes = 20;
constexpr auto kIdleSupervision = std::chrono::seconds(2);

// ---- 1 and 2: the engine ---------------------------------------------------

// Succeeds at once with {"out": <its ref>}. It checks that its "in" holds
// what the previous node returned (node n<i> expects "n<i-1>", n0 the
// argument "seed"), so a broken interpolation cannot pass unnoticed.
// Thread-safe.
class NoopExecutor : public NodeExecutor {
 public:
  NodeOutcome Execute(const NodeContext& ctx) override {
    calls_.fetch_add(1, std::memory_order_relaxed);
    int index = std::atoi(ctx.ref.c_str() + 1);
    const std::string expected = index == 0 ? "seed" : "n" + std::to_string(index - 1);
    const Value* in = ctx.spec.Find("in");
    if (!in || !in->is_string() || in->as_string() != expected) {
      wrong_inputs_.fetch_add(1, std::memory_order_relaxed);
    }
    return NodeOutcome::Success(Value::Object({{"out", Value::String(ctx.ref)}}));
  }
  NodeOutcome Recheck(const NodeContext& ctx, const Value&) override { return Execute(ctx); }

  int calls() const { return calls_.load(); }
  int wrong_inputs() const { return wrong_inputs_.load(); }

 private:
  std::atomic<int> calls_{0};
  std::atomic<int> wrong_inputs_{0};
};

std::string RefName(int i) { return "n" + std::to_string(i); }

// What node i's "in" says: the previous node's output, or the seed argument.
std::string InputExpression(int i) {
  return i == 0 ? "${args.SEED}" : "${refs." + RefName(i - 1) + ".out}";
}

// A flow whose root workflow runs `nodes` Action nodes in sequence.
Value SequentialFlow(int nodes) {
  std::vector<Value> steps;
  steps.reserve(static_cast<size_t>(nodes));
  for (int i = 0; i < nodes; ++i) {
    steps.push_back(Value::Object({{"kind", Value::String("Action")},
                                   {"ref", Value::String(RefName(i))},
                                   {"spec", Value::Object({{"in", Value::String(InputExpression(i))}})}}));
  }
  return Value::Object(
      {{"apiVersion", Value::String("v1.2")},
       {"arguments", Value::Object({{"SEED", Value::String("seed")}})},
       {"options", Value::Object({{"concurrencyPolicy", Value::String("allow")}})},
       {"spec", Value::Object({{"kind", Value::String("Workflow")},
                               {"spec", Value::Object({{"type", Value::String("sequential")},
                                                       {"steps", Value::Array(std::move(steps))}})}})}});
}

// A fresh engine over its own state database.
struct EngineUnderTest {
  TempDir dir{"rbench"};
  NoopExecutor executor;
  std::unique_ptr<Engine> engine;

  EngineUnderTest() {
    EngineOptions options;
    options.state_db = dir.Sub("state.db");
    auto opened = Engine::Open(options, &executor);
    if (!opened) {
      std::fprintf(stderr, "cannot open the engine: %s\n", opened.error().message.c_str());
      std::exit(1);
    }
    engine = std::move(*opened);
  }

  int64_t Start(const Value& body) {
    StartRequest request;
    request.flow_name = "bench";
    request.flow_revision = "rev-1";
    request.body = body;
    request.args = Value::Object();
    request.trigger_refs = Value::Object();
    auto id = engine->Start(request);
    if (!id) {
      std::fprintf(stderr, "Start failed: %s\n", id.error().message.c_str());
      std::exit(1);
    }
    return *id;
  }

  // Waits for the run; exits unless it succeeded.
  void ExpectSuccess(int64_t id) {
    auto status = engine->Wait(id, std::chrono::seconds(60));
    if (!status || *status != RunStatus::kSuccess) {
      auto run = engine->Get(id);
      std::fprintf(stderr, "run %lld ended %s: %s\n", static_cast<long long>(id),
                   status ? RunStatusName(*status) : status.error().message.c_str(),
                   run ? run->error.c_str() : "");
      std::exit(1);
    }
  }

  // Run durations (created to ended, ms resolution) of the given runs.
  std::vector<double> RunLatenciesMs(const std::vector<int64_t>& ids) {
    std::vector<double> out;
    for (int64_t id : ids) {
      auto run = engine->Get(id);
      if (run) out.push_back(static_cast<double>(run->ended_at - run->created_at));
    }
    return out;
  }
};

// The executor calls a runner would make for `nodes` nodes, made directly.
double DirectCallsMs(int nodes) {
  NoopExecutor executor;
  std::vector<NodeContext> contexts(static_cast<size_t>(nodes));
  for (int i = 0; i < nodes; ++i) {
    NodeContext& ctx = contexts[static_cast<size_t>(i)];
    ctx.run_id = 1;
    ctx.node_path = "0." + std::to_string(i);
    ctx.kind = "Action";
    ctx.ref = RefName(i);
    ctx.spec = Value::Object({{"in", Value::String(i == 0 ? "seed" : RefName(i - 1))}});
    ctx.cancelled = [] { return false; };
    ctx.log = [](std::string_view) {};
  }
  auto t = Clock::now();
  int failures = 0;
  for (const NodeContext& ctx : contexts) {
    if (executor.Execute(ctx).status != NodeOutcome::Status::kSuccess) ++failures;
  }
  double ms = MsSince(t);
  if (failures || executor.wrong_inputs()) std::fprintf(stderr, "direct calls: unexpected outcomes\n");
  return ms;
}

// Fails the bench unless the executor saw exactly `calls` calls, each with
// its input resolved.
void ExpectCalls(const NoopExecutor& executor, int calls) {
  if (executor.calls() != calls || executor.wrong_inputs() != 0) {
    std::fprintf(stderr, "expected %d calls with resolved inputs, got %d calls, %d wrong inputs\n", calls,
                 executor.calls(), executor.wrong_inputs());
    std::exit(1);
  }
}

// One flow of `nodes` nodes on a fresh engine; ms to conclude, and of that
// the Start call (dry run + creating the run and its node rows).
std::pair<double, double> TimeOneLongRun(const Value& body, int nodes) {
  EngineUnderTest bench;
  auto t = Clock::now();
  int64_t id = bench.Start(body);
  double start_ms = MsSince(t);
  bench.ExpectSuccess(id);
  double total_ms = MsSince(t);
  ExpectCalls(bench.executor, nodes);
  return {total_ms, start_ms};
}

void BenchRunnerOverhead(int nodes, int rounds) {
  const Value body = SequentialFlow(nodes);
  std::vector<double> totals, starts, directs;
  for (int round = 0; round < rounds; ++round) {
    auto [total_ms, start_ms] = TimeOneLongRun(body, nodes);
    totals.push_back(total_ms);
    starts.push_back(start_ms);
    directs.push_back(DirectCallsMs(nodes));
  }
  double total_ms = Percentile(totals, 0.5), direct_ms = Percentile(directs, 0.5);
  double per_node_ms = total_ms / nodes;
  std::printf("1. runner overhead: one sequential flow of %d no-op nodes, each reading ${refs.<previous>.out}"
              " (medians of %d rounds)\n", nodes, rounds);
  std::printf("  %-34s %10.1f ms  (min %.1f, max %.1f; of which Start: dry run + create %.1f ms)\n",
              "engine: Start -> Wait concluded", total_ms, Percentile(totals, 0), Percentile(totals, 1),
              Percentile(starts, 0.5));
  std::printf("  %-34s %10.3f ms  %s\n", "  per node", per_node_ms,
              per_node_ms < 1.0 ? "(target < 1 ms: met)" : "(target < 1 ms: NOT MET)");
  std::printf("  %-34s %10.3f ms  (%.4f ms a call)\n", "baseline: same calls in a loop", direct_ms,
              direct_ms / nodes);
  std::printf("  %-34s %10.3f ms\n", "runner overhead per node", (total_ms - direct_ms) / nodes);
}

struct ConcurrentRound {
  double all_ms = 0;      // first Start until every run concluded
  double started_ms = 0;  // until the last Start returned
  std::vector<double> run_ms;  // each run, created -> ended
};

ConcurrentRound TimeConcurrentRuns(const Value& body, int runs) {
  EngineUnderTest bench;
  ConcurrentRound round;
  std::vector<int64_t> ids;
  auto t = Clock::now();
  for (int i = 0; i < runs; ++i) ids.push_back(bench.Start(body));
  round.started_ms = MsSince(t);
  for (int64_t id : ids) bench.ExpectSuccess(id);
  round.all_ms = MsSince(t);
  ExpectCalls(bench.executor, runs * kConcurrentFlowNodes);
  round.run_ms = bench.RunLatenciesMs(ids);
  return round;
}

// Baseline: the same runs one after another, each awaited before the next.
double TimeRunsInTurn(const Value& body, int runs) {
  EngineUnderTest bench;
  auto t = Clock::now();
  for (int i = 0; i < runs; ++i) bench.ExpectSuccess(bench.Start(body));
  double ms = MsSince(t);
  ExpectCalls(bench.executor, runs * kConcurrentFlowNodes);
  return ms;
}

void BenchConcurrentRuns(int runs, int rounds) {
  const Value body = SequentialFlow(kConcurrentFlowNodes);
  const int total_nodes = runs * kConcurrentFlowNodes;
  std::vector<double> all, started, in_turn, run_ms;
  for (int round = 0; round < rounds; ++round) {
    // Alternate who goes first so neither always meets a warm page cache.
    if (round % 2) in_turn.push_back(TimeRunsInTurn(body, runs));
    ConcurrentRound r = TimeConcurrentRuns(body, runs);
    all.push_back(r.all_ms);
    started.push_back(r.started_ms);
    run_ms.insert(run_ms.end(), r.run_ms.begin(), r.run_ms.end());
    if (round % 2 == 0) in_turn.push_back(TimeRunsInTurn(body, runs));
  }
  double all_ms = Percentile(all, 0.5), in_turn_ms = Percentile(in_turn, 0.5);
  std::printf("2. %d concurrent runs of a %d-node sequential flow (%d nodes in all; medians of %d rounds)\n", runs,
              kConcurrentFlowNodes, total_nodes, rounds);
  std::printf("  %-34s %10.1f ms  %8.1f runs/s  %8.0f nodes/s  (last Start returned after %.1f ms)\n",
              "concurrent: all concluded", all_ms, runs * 1000.0 / all_ms, total_nodes * 1000.0 / all_ms,
              Percentile(started, 0.5));
  std::printf("  %-34s p50 %6.0f ms  p99 %6.0f ms\n", "  each run, created -> ended", Percentile(run_ms, 0.5),
              Percentile(run_ms, 0.99));
  std::printf("  %-34s %10.1f ms  %8.1f runs/s  %8.0f nodes/s\n", "baseline: one after another", in_turn_ms,
              runs * 1000.0 / in_turn_ms, total_nodes * 1000.0 / in_turn_ms);
  std::printf("  %-34s %10.2f\n", "speed-up from concurrency", in_turn_ms / all_ms);
}

// ---- 3: supervised services -----------------------------------------------

// The smallest server a TCP health check accepts: accept and close. It also
// ends once its parent (this bench) is gone, so even a bench killed half-way
// leaves no server behind; the servers lead their own sessions, so a ^C
// would not reach them.
constexpr const char* kServer =
    "import os, socket\n"
    "parent = os.getppid()\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(os.environ['PORT'])))\n"
    "s.listen(16)\n"
    "s.settimeout(1)\n"
    "while os.getppid() == parent:\n"
    "    try:\n"
    "        s.accept()[0].close()\n"
    "    except socket.timeout:\n"
    "        pass\n";

// Health checks every 100 ms: readiness is polled at that pace by the
// manager, and the baseline polls the same way.
constexpr milliseconds kHealthInterval{100};

// A "Key:   123 kB" line of a /proc file, in kB; -1 when absent.
long ProcKb(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  }
  return -1;
}

struct Memory {
  long rss_kb = 0, pss_kb = 0;
  int counted = 0;
};

// Total RSS and PSS of the given processes. PSS shares the pages they have in
// common (the python interpreter) among them, so it is the honest sum.
Memory ChildrenMemory(const std::vector<pid_t>& pids) {
  Memory m;
  for (pid_t pid : pids) {
    std::string proc = "/proc/" + std::to_string(pid);
    long rss = ProcKb(proc + "/status", "VmRSS"), pss = ProcKb(proc + "/smaps_rollup", "Pss");
    if (rss < 0) continue;
    m.rss_kb += rss;
    m.pss_kb += std::max(pss, 0L);
    ++m.counted;
  }
  return m;
}

double CpuMsSelf() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto ms = [](const timeval& tv) { return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0; };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// Every process the bench saw started; on destruction, whichever of them
// still runs (same pid and start time) is killed with its group. Nothing is
// left behind even when a step fails half-way.
class LeftoverKiller {
 public:
  void Add(pid_t pid) {
    if (auto start = ProcessStartTime(pid)) ids_.push_back(ProcessIdentity{pid, *start});
  }
  // How many of them still run.
  int Running() const {
    return static_cast<int>(std::count_if(ids_.begin(), ids_.end(), [](const auto& id) { return IsRunning(id); }));
  }
  // Kills what still runs; returns how many that was.
  int KillRunning() {
    int killed = 0;
    for (const ProcessIdentity& id : ids_) {
      if (!IsRunning(id)) continue;
      kill(-id.pid, SIGKILL);
      kill(id.pid, SIGKILL);
      waitpid(id.pid, nullptr, 0);
      ++killed;
    }
    return killed;
  }
  ~LeftoverKiller() { KillRunning(); }

 private:
  std::vector<ProcessIdentity> ids_;
};

// Baseline: the same servers launched directly, each on a port picked here,
// until every one accepts a connection (polled every kHealthInterval).
struct DirectResult {
  double all_ready_ms = 0;
  Memory children;
  bool ok = false;
};

DirectResult LaunchDirectly(int services, const TempDir& dir, const std::string& cwd, int port_base,
                            LeftoverKiller& killer) {
  DirectResult result;
  std::vector<Child> children;
  std::vector<int> ports;
  auto t = Clock::now();
  for (int i = 0; i < services; ++i) {
    int port = port_base + 100 + i;  // apart from the manager's range
    auto child = Child::Launch(LaunchSpec{.argv = {"python3", "-c", kServer},
                                          .cwd = cwd,
                                          .env = {{"PORT", std::to_string(port)}},
                                          .log_file = dir.Sub("direct-" + std::to_string(i) + ".log")});
    if (!child) {
      std::fprintf(stderr, "direct launch: %s\n", child.error().message.c_str());
      return result;
    }
    killer.Add(child->pid());
    children.push_back(std::move(*child));
    ports.push_back(port);
  }
  auto deadline = Clock::now() + std::chrono::seconds(20);
  for (size_t i = 0; i < ports.size(); ++i) {
    while (!Accepts(ports[i])) {
      auto exit = children[i].TryWait();
      if (exit || Clock::now() > deadline) {
        std::fprintf(stderr, "direct launch: the server on port %d %s\n%s\n", ports[i],
                     exit ? ("ended: " + exit->Describe()).c_str() : "never accepted",
                     ReadTail(dir.Sub("direct-" + std::to_string(i) + ".log"), 5).c_str());
        return result;
      }
      std::this_thread::sleep_for(kHealthInterval);
    }
  }
  result.all_ready_ms = MsSince(t);
  std::vector<pid_t> pids;
  for (const Child& c : children) pids.push_back(c.pid());
  result.children = ChildrenMemory(pids);
  for (Child& c : children) c.Stop(std::chrono::seconds(2));
  result.ok = true;
  return result;
}

ServiceSpec ServerSpec(int i, const std::string& cwd) {
  ServiceSpec spec;
  spec.service = "svc-" + std::to_string(i);
  spec.build = spec.service + "@bench";
  spec.build_dir = cwd;
  spec.command = {"python3", "-c", kServer};
  spec.health.kind = HealthCheck::Kind::kTcp;
  spec.health.interval = kHealthInterval;
  spec.health.timeout = std::chrono::seconds(1);
  return spec;
}

// Removes every service the manager lists; returns how many it could not.
int RemoveAll(ServiceManager& manager) {
  auto all = manager.List();
  if (!all) return -1;
  int failed = 0;
  for (const ServiceStatus& s : *all) {
    if (auto r = manager.Remove(s.service); !r) {
      std::fprintf(stderr, "remove %s: %s\n", s.service.c_str(), r.error().message.c_str());
      ++failed;
    }
  }
  return failed;
}

bool BenchServices(int services) {
  TempDir dir("rbench-svc");
  const std::string app = dir.Sub("app");
  std::filesystem::create_directories(app);
  // Below Linux's ephemeral range (32768-60999 by default), where our own
  // health-check connections would otherwise take a server's port first.
  std::mt19937 random(static_cast<unsigned>(getpid()) ^ static_cast<unsigned>(time(nullptr)));
  const int port_base = 20000 + static_cast<int>(random() % 120) * 100;
  LeftoverKiller killer;

  // The manager allocates from port_base..+99; the baseline uses the next 100.
  DirectResult direct = LaunchDirectly(services, dir, app, port_base, killer);
  if (!direct.ok) return false;

  long rss_before = ProcKb("/proc/self/status", "VmRSS");
  long threads_before = ProcKb("/proc/self/status", "Threads");
  ProcessServiceOptions options;
  options.port_min = port_base;
  options.port_max = port_base + 99;
  options.ready_timeout = std::chrono::seconds(20);
  options.stop_grace = std::chrono::seconds(2);
  auto opened = ProcessServiceManager::Open(dir.Sub("state"), options);
  if (!opened) {
    std::fprintf(stderr, "cannot open the service manager: %s\n", opened.error().message.c_str());
    return false;
  }
  std::unique_ptr<ProcessServiceManager> manager = std::move(*opened);

  // One thread per deploy, as a parallel workflow of Release nodes would.
  std::vector<double> deploy_ms(static_cast<size_t>(services));
  std::atomic<int> failures{0};
  std::mutex error_mu;
  std::string first_error;
  std::vector<std::thread> threads;
  auto t = Clock::now();
  for (int i = 0; i < services; ++i) {
    threads.emplace_back([&, i] {
      auto started = Clock::now();
      if (auto r = manager->Deploy(ServerSpec(i, app)); !r) {
        ++failures;
        std::lock_guard lock(error_mu);
        if (first_error.empty()) first_error = r.error().message;
      }
      deploy_ms[static_cast<size_t>(i)] = MsSince(started);
    });
  }
  for (auto& th : threads) th.join();
  double all_deployed_ms = MsSince(t);

  std::vector<pid_t> pids;
  int healthy = 0;
  if (auto all = manager->List()) {
    for (const ServiceStatus& s : *all) {
      if (s.pid > 0) {
        pids.push_back(s.pid);
        killer.Add(s.pid);
      }
      healthy += s.healthy ? 1 : 0;
    }
  }
  long rss_deployed = ProcKb("/proc/self/status", "VmRSS");
  double cpu_before = CpuMsSelf();
  std::this_thread::sleep_for(kIdleSupervision);
  double idle_cpu_ms = CpuMsSelf() - cpu_before;
  long rss_after = ProcKb("/proc/self/status", "VmRSS");
  long threads_after = ProcKb("/proc/self/status", "Threads");
  Memory children = ChildrenMemory(pids);

  auto stop_t = Clock::now();
  int remove_failures = RemoveAll(*manager);
  double stop_ms = MsSince(stop_t);
  auto left = manager->List();
  size_t still_listed = left ? left->size() : 0;
  manager.reset();
  int still_running = killer.Running();
  int killed = killer.KillRunning();

  std::printf("3. %d supervised services (python3 TCP servers, TCP health check every %lld ms)\n", services,
              static_cast<long long>(kHealthInterval.count()));
  std::printf("  %-34s %10.1f ms  (each deploy p50 %.0f ms, p99 %.0f ms)%s\n", "manager: deploy all at once",
              all_deployed_ms, Percentile(deploy_ms, 0.5), Percentile(deploy_ms, 0.99),
              failures ? " (SOME FAILED)" : "");
  std::printf("  %-34s %10.1f ms\n", "baseline: launch directly, accept", direct.all_ready_ms);
  std::printf("  %-34s %7.1f MB before, %.1f MB deployed, %.1f MB after %llds (+%.1f MB, %.1f kB a service)\n",
              "this process VmRSS", rss_before / 1024.0, rss_deployed / 1024.0, rss_after / 1024.0,
              static_cast<long long>(kIdleSupervision.count()), (rss_after - rss_before) / 1024.0,
              static_cast<double>(rss_after - rss_before) / services);
  std::printf("  %-34s %7ld before, %ld after\n", "this process threads", threads_before, threads_after);
  std::printf("  %-34s %10.1f ms CPU over %llds of supervision\n", "this process, idle", idle_cpu_ms,
              static_cast<long long>(kIdleSupervision.count()));
  std::printf("  %-34s %7.1f MB RSS, %.1f MB PSS (%d processes, %d healthy)\n", "children, supervised",
              children.rss_kb / 1024.0, children.pss_kb / 1024.0, children.counted, healthy);
  std::printf("  %-34s %7.1f MB RSS, %.1f MB PSS (%d processes)\n", "baseline: children, direct",
              direct.children.rss_kb / 1024.0, direct.children.pss_kb / 1024.0, direct.children.counted);
  std::printf("  %-34s %10.1f ms; still listed %zu, still running %d, killed by pid %d\n", "remove all", stop_ms,
              still_listed, still_running, killed);
  if (failures) std::fprintf(stderr, "first deploy failure: %s\n", first_error.c_str());
  return failures == 0 && remove_failures == 0 && still_listed == 0 && still_running == 0 &&
         children.counted == services;
}

}  // namespace

int main(int argc, char** argv) {
  int nodes = 1000, runs = 50, services = 50, rounds = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    int* target = a == "--nodes"      ? &nodes
                  : a == "--runs"     ? &runs
                  : a == "--services" ? &services
                  : a == "--rounds"   ? &rounds
                                      : nullptr;
    if (target && i + 1 < argc) {
      *target = std::atoi(argv[++i]);
    } else {
      std::printf("usage: runner_bench [--nodes N] [--runs N] [--services N<=100] [--rounds N]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (nodes < 1 || runs < 1 || rounds < 1 || services < 1 || services > 100) {
    std::fprintf(stderr, "--nodes, --runs, --rounds and --services must be positive (--services at most 100)\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);  // the engine logs every run it creates
  auto t = Clock::now();
  BenchRunnerOverhead(nodes, rounds);
  std::fflush(stdout);
  BenchConcurrentRuns(runs, rounds);
  std::fflush(stdout);
  bool ok = BenchServices(services);
  std::printf("whole run: %.1f s\n", MsSince(t) / 1000.0);
  return ok ? 0 : 1;
}
