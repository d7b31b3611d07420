// Package compose holds the end-to-end test of the docker compose
// deployment: the unchanged docker-compose.yml and deploy/Dockerfile, built
// and run on the local Docker engine, checked through the load balancer on
// loopback. It runs whenever a Docker engine answers; with
// PARLEY_REQUIRE_DOCKER=1 (set by .ci/run) a missing engine is a failure.
package compose
