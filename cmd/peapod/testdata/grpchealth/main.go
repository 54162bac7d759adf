// Command grpchealth serves the standard gRPC health service, SERVING, on
// the address given as its argument: the target of the end-to-end tests'
// grpc probes. The tests build it static and mount it into a busybox pod.
package main

import (
	"log"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: grpchealth ADDR")
	}
	l, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	log.Fatal(srv.Serve(l))
}
