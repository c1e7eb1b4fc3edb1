// Reads back the profile written by the mpirun test (tests.cmake) and checks that every expected
// group exists with positive times; exits 1 with a message on the first problem.
#include <cstdio>
#include <string>

#include "strata/cluster/cluster.h"
#include "strata/profile/comm_model.h"
#include "strata/profile/store.h"

namespace {

int fail(const std::string& message) {
  std::fprintf(stderr, "check_profile: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace strata;
  if (argc != 3) return fail("usage: check_profile CLUSTER.yaml PROFILE.h5");
  auto spec = cluster::load_cluster(argv[1]);
  if (!spec) return fail(spec.error().message());
  auto profile = profile::Store::read(argv[2], spec->name);
  if (!profile) return fail(profile.error().message());
  // cpu-4 (2 nodes × 2): groups (1,2)/1x2 ax1, (1,2)/2x1 ax0, (2,2)/1x4 ax1, 2x2 ax0, 2x2 ax1, 4x1 ax0.
  if (profile->collectives.size() != 6 * 4) {
    return fail("expected 24 collective curves, found " + std::to_string(profile->collectives.size()));
  }
  const std::vector<int64_t> sizes = {1024, 4096, 16384, 65536};
  for (const auto& curve : profile->collectives) {
    if (curve.sizes_bytes != sizes) return fail(std::string(cluster::collective_name(curve.kind)) + ": wrong sizes");
    for (double seconds : curve.seconds) {
      if (!(seconds > 0 && seconds < 10)) return fail("a collective time is not in (0, 10) s");
    }
  }
  if (profile->p2p.size() != 2 || !profile->p2p[1].cross_node) return fail("expected intra and inter p2p curves");
  for (const auto& curve : profile->p2p) {
    for (double seconds : curve.seconds) {
      if (!(seconds > 0)) return fail("a p2p time is not positive");
    }
  }
  if (profile->gemm.size() != 3) return fail("expected 3 GEMM points");
  for (const auto& point : profile->gemm) {
    if (!(point.seconds > 0)) return fail("a GEMM time is not positive");
  }
  profile::ProfileCommModel model(*profile, *spec);
  const cluster::CommGroup groups[] = {{{1, 2}, {1, 2}, 1, false}, {{1, 2}, {2, 1}, 0, false},
                                       {{2, 2}, {1, 4}, 1, false}, {{2, 2}, {2, 2}, 0, false},
                                       {{2, 2}, {2, 2}, 1, false}, {{2, 2}, {4, 1}, 0, false},
                                       {{2, 2}, {2, 2}, -1, false}};
  for (const auto& group : groups) {
    for (auto kind : {cluster::Collective::all_reduce, cluster::Collective::all_gather,
                      cluster::Collective::reduce_scatter, cluster::Collective::all_to_all}) {
      if (!(model.seconds(kind, group, 8192, DType::f32) > 0)) return fail("a model time is not positive");
    }
  }
  if (!(model.seconds(cluster::Collective::send_recv, {{}, {}, -1, true}, 2048, DType::f32) > 0)) {
    return fail("p2p model time is not positive");
  }
  if (model.fallback_count() != 0) return fail("lookups fell back: " + model.describe());
  std::printf("check_profile: %s ok (%zu curves)\n", argv[2], profile->collectives.size());
  return 0;
}
