// Package compose holds the end-to-end tests of the docker compose
// deployments: the unchanged docker-compose.yml and deploy/Dockerfile, and
// docker-compose.cluster.yml (the same gateways on a Redis Cluster), built
// and run on the local Docker engine, checked through the load balancer on
// loopback. They run whenever a Docker engine answers; with
// PARLEY_REQUIRE_DOCKER=1 (set by .ci/run) a missing engine is a failure.
package compose
