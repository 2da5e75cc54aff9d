// Cloud City DoorManager server for the benchmarks: C++ gRPC, multi-threaded
// (the sync server's thread pool), no work per call, so what is measured is
// the path between client and server.
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <string>
#include <thread>

#include "cloudcity.grpc.pb.h"

namespace {

class DoorManager final : public cloudcity::DoorManager::Service {
  grpc::Status Reply(cloudcity::DoorReply* r) {
    r->set_text("ok");
    return grpc::Status::OK;
  }
  grpc::Status GetName(grpc::ServerContext*, const cloudcity::DoorRequest*, cloudcity::DoorReply* r) override {
    return Reply(r);
  }
  grpc::Status GetLocation(grpc::ServerContext*, const cloudcity::DoorRequest*, cloudcity::DoorReply* r) override {
    return Reply(r);
  }
  grpc::Status RequestMaintenance(grpc::ServerContext*, const cloudcity::DoorRequest*,
                                  cloudcity::DoorReply* r) override {
    return Reply(r);
  }
  grpc::Status SetAccessCode(grpc::ServerContext*, const cloudcity::DoorRequest*, cloudcity::DoorReply* r) override {
    return Reply(r);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string addr = argc > 1 ? argv[1] : "0.0.0.0:50051";
  DoorManager service;
  grpc::ServerBuilder b;
  b.AddListeningPort(addr, grpc::InsecureServerCredentials());
  b.RegisterService(&service);
  b.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 2);
  b.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 4);
  b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1000);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) {
    std::cerr << "cannot listen on " << addr << "\n";
    return 1;
  }
  std::cout << "listening " << addr << std::endl;
  server->Wait();
}
