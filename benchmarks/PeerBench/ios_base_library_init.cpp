// Preloaded by benchmarks/PeerBench/peer.sh for the libtorch peer only (never part of the product).
// GCC 13's libstdc++ (version GLIBCXX_3.4.32) exports std::ios_base_library_init(), which code compiled by GCC 13
// calls from its static initialisers to make sure the standard streams are constructed; Debian 12's libstdc++
// (GCC 12) lacks it. TorchSharp's libLibTorchSharp.so needs only this symbol of that version. The definition here
// (unversioned, which glibc accepts for a weak version requirement) constructs the streams the old way.
#include <ios>

namespace std
{
    void ios_base_library_init();

    void ios_base_library_init()
    {
        static ios_base::Init init;
    }
}
