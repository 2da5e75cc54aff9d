"""Cloud City DoorManager server (python grpcio). Logs one line per handler
run ("handler <Method> <door_id>") so tests can tell whether a method's
handler ran at all."""
import argparse
import os
import sys
from concurrent import futures

sys.path.insert(0, os.environ.get("GW_PYGEN", os.path.dirname(__file__)))
import grpc  # noqa: E402
import cloudcity_pb2  # noqa: E402
import cloudcity_pb2_grpc  # noqa: E402


class DoorManager(cloudcity_pb2_grpc.DoorManagerServicer):
    def __init__(self, unimplemented=(), reply_bytes=0):
        self.unimplemented = set(unimplemented)
        self.reply_bytes = reply_bytes

    def _run(self, method, request, context):
        print(f"handler {method} {request.door_id}", flush=True)
        if method in self.unimplemented:
            # the server's own "no such method" (what C-core answers for an
            # unknown one): Trailers-Only, grpc-status 12
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        text = f"{method} ok"
        return cloudcity_pb2.DoorReply(text=text + "." * (self.reply_bytes - len(text)))

    def GetName(self, request, context):
        return self._run("GetName", request, context)

    def GetLocation(self, request, context):
        return self._run("GetLocation", request, context)

    def RequestMaintenance(self, request, context):
        return self._run("RequestMaintenance", request, context)

    def SetAccessCode(self, request, context):
        return self._run("SetAccessCode", request, context)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="0.0.0.0:50051")
    ap.add_argument("--max-metadata", type=int, default=0, help="grpc.max_metadata_size")
    ap.add_argument("--unimplemented", action="append", default=[], metavar="METHOD",
                    help="METHOD's handler answers UNIMPLEMENTED (as for a method the server lacks)")
    ap.add_argument("--reply-bytes", type=int, default=0, metavar="N",
                    help="pad every reply's text to N bytes (large answers fill a slow caller's window)")
    a = ap.parse_args()
    opts = []
    if a.max_metadata:
        opts.append(("grpc.max_metadata_size", a.max_metadata))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=opts)
    cloudcity_pb2_grpc.add_DoorManagerServicer_to_server(DoorManager(a.unimplemented, a.reply_bytes), server)
    server.add_insecure_port(a.addr)
    server.start()
    print(f"listening {a.addr}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
