// lmmr1_profiler: GPU kernel times through libtorch's Kineto profiler (what torch.profiler uses; CUPTI underneath), for
// `lmmr1 bench train --profile-kernels` and `lmmr1 bench generate --profile-kernels`. Optional part of liblmmr1_native:
// NativeExtension compiles it as its own object and links it in only when it compiles against the installed
// PyTorch's headers (the profiler's C++ API moves between versions); without it the two exports are absent and the
// managed side says so. Only CUDA activity is recorded (kernels, memcpy, memset; kernels replayed inside CUDA graphs
// too), process-wide, so kernels launched from autograd's worker threads are counted. The result is aggregated here
// into one line per kernel name, "name<TAB>launches<TAB>total ns", so no event crosses the ABI.
#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstdint>
#include <exception>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

namespace {
std::string profiler_error;
}

extern "C" {

const char* lmmr1_profiler_error() { return profiler_error.c_str(); }

// Starts recording CUDA activity; 0, or -1 with a message for lmmr1_profiler_error().
int lmmr1_profiler_start() {
    try {
        using torch::profiler::impl::ActivityType;
        torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
        const std::set<ActivityType> activities{ActivityType::CUDA};
        torch::autograd::profiler::prepareProfiler(config, activities);
        torch::autograd::profiler::enableProfiler(config, activities);
        return 0;
    } catch (const std::exception& e) {
        profiler_error = e.what();
        return -1;
    }
}

// Stops recording; writes the per-name table to table_path and, when trace_path is not null, the Chrome trace there.
int lmmr1_profiler_stop(const char* table_path, const char* trace_path) {
    try {
        auto result = torch::autograd::profiler::disableProfiler();
        std::map<std::string, std::pair<std::int64_t, std::int64_t>> by_name;
        for (const auto& e : result->events()) {
            if (e.deviceType() != c10::DeviceType::CUDA) continue;
            auto& s = by_name[e.name()];
            s.first += 1;
            s.second += static_cast<std::int64_t>(e.durationNs());
        }
        std::ofstream out(table_path);
        if (!out) throw std::runtime_error(std::string("cannot write ") + table_path);
        for (const auto& [name, s] : by_name) {
            std::string clean = name;
            for (char& c : clean)
                if (c == '\t' || c == '\n' || c == '\r') c = ' ';
            out << clean << '\t' << s.first << '\t' << s.second << '\n';
        }
        if (trace_path) result->save(trace_path);
        return 0;
    } catch (const std::exception& e) {
        profiler_error = e.what();
        return -1;
    }
}

}  // extern "C"
