// Compatibility shim for TorchSharp 0.107.0 on systems whose libstdc++ predates GCC 13 (Debian 12: GLIBCXX_3.4.30).
// libLibTorchSharp.so references std::ios_base_library_init@GLIBCXX_3.4.32, which GCC 13's <iostream> calls where
// older compilers constructed a static ios_base::Init. Providing it here (and marking that version reference weak in
// libLibTorchSharp.so) lets the library load; see build/TorchSharpDebian12Fix.targets.
#include <ios>
namespace std {
void ios_base_library_init() { static ios_base::Init init; }
}
