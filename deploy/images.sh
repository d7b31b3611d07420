#!/usr/bin/env bash
# deploy/images.sh: build local stand-ins for the base images that
# deploy/Dockerfile and docker-compose.yml name, tagged with exactly those
# names, so both files work unchanged on a host that cannot reach a registry.
#
# Why: some build and CI hosts are air-gapped. `docker pull` fails there and
# the engine starts with no images, so `FROM golang:...` and `image: redis:...`
# cannot resolve. This script assembles equivalent root filesystems from what
# the host already has (its Go toolchain, redis-server, haproxy, a static
# busybox, the CA bundle) and loads them with `docker import`.
#
# On a normal host you do not need it: docker pulls the official images.
# The stand-ins are not the official images. They carry the host's versions
# (e.g. Debian's Redis 7.0 and HAProxy 2.6), busybox instead of a distro, and
# the same users, paths, ENV, USER, WORKDIR, VOLUME, EXPOSE, ENTRYPOINT and
# CMD as the images they replace, which is what the Dockerfile and the compose
# file rely on.
#
# Image names are read from the files: every `FROM` in deploy/Dockerfile
# (build-stage references and scratch skipped) and every `image:` in
# docker-compose.yml (names starting with "parley" are ours and skipped).
# A name with no builder below is an error.
set -euo pipefail
umask 022

prog=${0##*/}
usage() {
	cat <<EOF
Usage: deploy/$prog [--force]

Builds local stand-ins for the base images named in deploy/Dockerfile (FROM)
and docker-compose.yml (image:), for hosts with no registry access.

  --force    rebuild every image, even those that already exist locally
  -h, --help show this help

Known images: golang:*, gcr.io/distroless/static*, redis:*, haproxy:*.
Needs: docker, go, redis-server, redis-cli, haproxy, busybox (static), tar.
On a host that can pull images you do not need this script.
EOF
}

force=0
for arg in "$@"; do
	case $arg in
	--force | -f) force=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "$prog: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
	esac
done

die() { echo "$prog: $*" >&2; exit 1; }
warn() { echo "$prog: warning: $*" >&2; }

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dockerfile=$root_dir/deploy/Dockerfile
composefile=$root_dir/docker-compose.yml
ca_bundle=/etc/ssl/certs/ca-certificates.crt
PATH_STD=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---------------------------------------------------------------------------
# Which images: read them from the files.

dockerfile_images() {
	# FROM [--platform=...] image [AS name]; later FROMs may name a stage.
	awk '
		toupper($1) == "FROM" {
			i = 2
			while (i <= NF && $i ~ /^--/) i++
			img = $i
			if (i + 2 <= NF && tolower($(i + 1)) == "as") alias = tolower($(i + 2)); else alias = ""
			if (img != "" && !(tolower(img) in stage) && tolower(img) != "scratch") print img
			if (alias != "") stage[alias] = 1
		}' "$1"
}

compose_images() {
	sed -nE 's/^[[:space:]]*image:[[:space:]]*//p' "$1" |
		sed -E 's/[[:space:]]+#.*$//; s/[[:space:]]+$//; s/^["'\'']//; s/["'\'']$//'
}

declare -a names=() sources=()
add_name() { # name source
	local n
	for n in "${names[@]+"${names[@]}"}"; do [ "$n" = "$1" ] && return 0; done
	case $1 in
	*'$'*) die "$2 names image '$1' with a variable; this script reads the files literally, write the name out" ;;
	parley*) return 0 ;; # our own image, built from deploy/Dockerfile
	esac
	names+=("$1")
	sources+=("$2")
}

if [ -f "$dockerfile" ]; then
	while read -r n; do add_name "$n" deploy/Dockerfile; done < <(dockerfile_images "$dockerfile")
else
	echo "$prog: no deploy/Dockerfile, skipping it"
fi
if [ -f "$composefile" ]; then
	while read -r n; do [ -n "$n" ] && add_name "$n" docker-compose.yml; done < <(compose_images "$composefile")
else
	echo "$prog: no docker-compose.yml yet, skipping it"
fi
[ ${#names[@]} -gt 0 ] || { echo "$prog: no base images named, nothing to do"; exit 0; }

# Builder for a name, or fail. docker.io/library/ prefixes are the same image.
builder_for() {
	local n=${1#docker.io/}
	n=${n#library/}
	case $n in
	golang | golang:*) echo golang ;;
	gcr.io/distroless/static | gcr.io/distroless/static:* | gcr.io/distroless/static-*) echo distroless_static ;;
	redis | redis:*) echo redis ;;
	haproxy | haproxy:*) echo haproxy ;;
	*) return 1 ;;
	esac
}

declare -a todo=() todo_builder=()
for i in "${!names[@]}"; do
	n=${names[$i]}
	b=$(builder_for "$n") || die "no stand-in builder for image '$n' (named in ${sources[$i]}). Known: golang:*, gcr.io/distroless/static*, redis:*, haproxy:*. Add a builder to deploy/$prog, or docker load the real image."
	todo+=("$n")
	todo_builder+=("$b")
done

# ---------------------------------------------------------------------------
# Prerequisites, checked before anything is built.

command -v docker >/dev/null 2>&1 || die "docker not found (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "cannot talk to the docker daemon (is it running? are you in the docker group?)"

exists() { docker image inspect "$1" >/dev/null 2>&1; }

GO=${GO:-}
if [ -z "$GO" ]; then
	if command -v go >/dev/null 2>&1; then GO=go; elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
fi

declare -a build=() build_builder=()
for i in "${!todo[@]}"; do
	if [ $force -eq 0 ] && exists "${todo[$i]}"; then
		echo "${todo[$i]}: exists, skipped (--force rebuilds it)"
	else
		build+=("${todo[$i]}")
		build_builder+=("${todo_builder[$i]}")
	fi
done
[ ${#build[@]} -gt 0 ] || exit 0

declare -a missing=() pkgs=()
need() { # command debian-package
	command -v "$1" >/dev/null 2>&1 && return 0
	missing+=("$1")
	case " ${pkgs[*]+"${pkgs[*]}"} " in *" $2 "*) ;; *) pkgs+=("$2") ;; esac
}
need tar tar
for b in "${build_builder[@]}"; do
	case $b in
	golang)
		[ -n "$GO" ] || { missing+=(go); pkgs+=("golang-go(or a go.dev/dl tarball in /usr/local/go)"); }
		need busybox busybox-static ;;
	redis) need redis-server redis-server; need redis-cli redis-tools; need busybox busybox-static; need ldd libc-bin ;;
	haproxy) need haproxy haproxy; need busybox busybox-static; need ldd libc-bin ;;
	esac
done
[ -r "$ca_bundle" ] || { missing+=("$ca_bundle"); pkgs+=(ca-certificates); }
if [ ${#missing[@]} -gt 0 ]; then
	die "missing: ${missing[*]}
Install with: apt-get install ${pkgs[*]}
(all of them: apt-get install redis-server redis-tools haproxy busybox-static ca-certificates)"
fi
if command -v busybox >/dev/null 2>&1 && ldd "$(command -v busybox)" >/dev/null 2>&1; then
	die "$(command -v busybox) is dynamically linked; the images need a static one: apt-get install busybox-static"
fi
[ "$(id -u)" -eq 0 ] || echo "$prog: not root (uid $(id -u)); file ownership in the images comes from tar options, so that is fine"

# ---------------------------------------------------------------------------
# Staging helpers.

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-images.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

new_rootfs() { # dir
	mkdir -p "$1"
	chmod 755 "$1" # mktemp made $tmp 0700; the image's / must not be
	mkdir -p "$1"/{etc,tmp,root} "$1"/etc/ssl/certs
	chmod 1777 "$1/tmp"
	chmod 700 "$1/root"
	cp -L "$ca_bundle" "$1/etc/ssl/certs/ca-certificates.crt"
	chmod 644 "$1/etc/ssl/certs/ca-certificates.crt"
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$1/etc/nsswitch.conf"
}

add_busybox() { # rootfs: /bin/busybox plus every applet at its usual path
	local r=$1 a
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin}
	install -m 755 "$(command -v busybox)" "$r/bin/busybox"
	while read -r a; do
		case $a in bin/busybox | linuxrc | linuxrc/ | "") continue ;; esac
		[ -e "$r/$a" ] || [ -L "$r/$a" ] || ln -s /bin/busybox "$r/$a"
	done < <(busybox --list-full)
}

add_with_libs() { # rootfs dest-dir binary...: binaries, their ldd libraries and the loader
	local r=$1 dest=$2 bin lib
	shift 2
	mkdir -p "$r$dest"
	for bin in "$@"; do
		install -m 755 "$(readlink -f "$(command -v "$bin")")" "$r$dest/${bin##*/}"
	done
	for bin in "$@"; do
		if ldd "$(command -v "$bin")" | grep -q 'not found'; then
			die "$bin: ldd reports missing libraries:
$(ldd "$(command -v "$bin")" | grep 'not found')"
		fi
		ldd "$(command -v "$bin")" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
	done | sort -u | while read -r lib; do
		mkdir -p "$r${lib%/*}"
		cp -L "$lib" "$r$lib"
	done
}

# pack rootfs tarfile [path:uid:gid ...]: everything owned by 0:0 except the
# listed paths (and what is under them). Ownership comes from tar options,
# not the staging tree, so this works without root.
pack() {
	local r=$1 out=$2 spec p uid gid
	shift 2
	local excl=()
	for spec in "$@"; do excl+=("--exclude=./${spec%%:*}"); done
	tar -C "$r" --numeric-owner --owner=0 --group=0 "${excl[@]+"${excl[@]}"}" -cf "$out" .
	for spec in "$@"; do
		IFS=: read -r p uid gid <<<"$spec"
		tar -C "$r" --numeric-owner --owner="$uid" --group="$gid" -rf "$out" "./$p"
	done
}

human() { awk -v b="$1" 'BEGIN { if (b >= 1e6) printf "%.1f MB", b / 1e6; else printf "%.0f kB", b / 1e3 }'; } # decimal, as docker images prints

# import name tarfile change...: load the layer as image `name`. `docker
# import --change` takes CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME and
# WORKDIR but (engine 20.10) not STOPSIGNAL, so a STOPSIGNAL is added by a
# one-line `docker build` on top. A --force rebuild untags the previous image;
# it is removed if nothing else uses it.
import() {
	local name=$1 tarfile=$2 old new c err
	shift 2
	local changes=(--change "LABEL org.opencontainers.image.description=\"local stand-in for $name, built by deploy/images.sh\"")
	local late=()
	for c in "$@"; do
		case $c in
		STOPSIGNAL*) late+=("$c") ;;
		*) changes+=(--change "$c") ;;
		esac
	done
	old=$(docker image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)
	if [ ${#late[@]} -eq 0 ]; then
		new=$(docker import "${changes[@]}" -m "stand-in for $name (deploy/images.sh)" "$tarfile" "$name")
	else
		new=$(docker import "${changes[@]}" -m "stand-in for $name (deploy/images.sh)" "$tarfile")
		if ! err=$(printf 'FROM %s\n%s\n' "$new" "${late[@]}" | docker build -q -t "$name" - 2>&1); then
			docker image rm "$new" >/dev/null 2>&1 || true
			die "docker build of $name failed: $err"
		fi
		new=$(docker image inspect -f '{{.Id}}' "$name")
	fi
	if [ -n "$old" ] && [ "$old" != "$new" ] &&
		[ "$(docker image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null)" = 0 ]; then
		docker image rm "$old" >/dev/null 2>&1 || true # still a parent of built images: keep it
	fi
}

passwd_line() { echo "$1:x:$2:$3:$1:$4:$5"; }

# ---------------------------------------------------------------------------
# Builders. Each stages $1/rootfs and imports it as image $2.

build_golang() {
	local w=$1 name=$2 r=$1/rootfs goroot gover tag
	goroot=$("$GO" env GOROOT)
	gover=$("$GO" env GOVERSION)
	tag=${name##*:}
	[ "$tag" = "$name" ] && tag=latest
	case $tag in
	[0-9]*)
		local want=${tag%%[!0-9.]*} # 1.26 from 1.26-bookworm
		case ${gover#go}. in "$want".*) ;; *) warn "$name will hold the host's $gover, not Go $want (GOTOOLCHAIN=local)" ;; esac ;;
	esac
	new_rootfs "$r"
	add_busybox "$r"
	passwd_line root 0 0 /root /bin/sh >"$r/etc/passwd"
	passwd_line nobody 65534 65534 /nonexistent /usr/sbin/nologin >>"$r/etc/passwd"
	printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
	mkdir -p "$r"/go/{bin,src} "$r/usr/local"
	chmod -R 1777 "$r/go"
	pack "$r" "$w/layer.tar"
	# GOROOT goes straight from the host into the archive as /usr/local/go,
	# minus what building does not use: tests, docs, API lists, testdata.
	tar -C "$goroot" --numeric-owner --owner=0 --group=0 \
		--exclude=./test --exclude=./doc --exclude=./api --exclude=./pkg/obj \
		--exclude=testdata --exclude='*_test.go' \
		--transform='s,^\.,./usr/local/go,S' -rf "$w/layer.tar" .
	import "$name" "$w/layer.tar" \
		"ENV PATH=/go/bin:/usr/local/go/bin:$PATH_STD" \
		"ENV GOLANG_VERSION=${gover#go}" \
		"ENV GOTOOLCHAIN=local" \
		"ENV GOPATH=/go" \
		"WORKDIR /go" \
		'CMD ["sh"]'
}

build_distroless_static() {
	local w=$1 name=$2 r=$1/rootfs
	new_rootfs "$r"
	passwd_line root 0 0 /root /sbin/nologin >"$r/etc/passwd"
	passwd_line nobody 65534 65534 /nonexistent /sbin/nologin >>"$r/etc/passwd"
	passwd_line nonroot 65532 65532 /home/nonroot /sbin/nologin >>"$r/etc/passwd"
	printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$r/etc/group"
	mkdir -p "$r/home/nonroot"
	chmod 700 "$r/home/nonroot"
	if [ -d /usr/share/zoneinfo ]; then
		mkdir -p "$r/usr/share"
		cp -a /usr/share/zoneinfo "$r/usr/share/zoneinfo"
	fi
	printf 'PRETTY_NAME="Distroless (local stand-in)"\nNAME="Debian GNU/Linux"\nID="debian"\n' >"$r/etc/os-release"
	pack "$r" "$w/layer.tar" home/nonroot:65532:65532
	local user=()
	case $name in
	*nonroot) user=("USER 65532" "WORKDIR /home/nonroot") ;;
	*) user=("WORKDIR /") ;;
	esac
	import "$name" "$w/layer.tar" \
		"ENV PATH=$PATH_STD" \
		"ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
		"${user[@]}"
}

build_redis() {
	local w=$1 name=$2 r=$1/rootfs ver
	new_rootfs "$r"
	add_busybox "$r"
	add_with_libs "$r" /usr/local/bin redis-server redis-cli
	local l
	for l in redis-check-aof redis-check-rdb redis-sentinel; do ln -s redis-server "$r/usr/local/bin/$l"; done
	passwd_line root 0 0 /root /bin/sh >"$r/etc/passwd"
	passwd_line redis 999 999 /home/redis /usr/sbin/nologin >>"$r/etc/passwd"
	passwd_line nobody 65534 65534 /nonexistent /usr/sbin/nologin >>"$r/etc/passwd"
	printf 'root:x:0:\nredis:x:999:\nnobody:x:65534:\n' >"$r/etc/group"
	mkdir -p "$r/data"
	# The official image's entrypoint adds "redis-server" when the first
	# argument is an option or a .conf file, and its redis is built with
	# protected mode off (the container network is the boundary). Debian's
	# binary has it on, which refuses every client from another container,
	# so the entrypoint turns it off unless a config file is given.
	cat >"$r/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
case "$1" in -* | *.conf) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
	case "${2:-}" in
	-v | -h | --version | --help | --test-memory | --check-system) ;;
	"" | --*) shift; set -- redis-server --protected-mode no "$@" ;;
	esac
fi
exec "$@"
EOF
	chmod 755 "$r/usr/local/bin/docker-entrypoint.sh"
	ver=$(redis-server --version | sed -nE 's/.* v=([^ ]+).*/\1/p')
	pack "$r" "$w/layer.tar" data:999:999
	import "$name" "$w/layer.tar" \
		"ENV PATH=$PATH_STD" \
		"ENV REDIS_VERSION=$ver" \
		"USER 999" \
		"WORKDIR /data" \
		"VOLUME /data" \
		"EXPOSE 6379" \
		'ENTRYPOINT ["docker-entrypoint.sh"]' \
		'CMD ["redis-server"]'
}

build_haproxy() {
	local w=$1 name=$2 r=$1/rootfs ver
	new_rootfs "$r"
	add_busybox "$r"
	add_with_libs "$r" /usr/local/sbin haproxy
	passwd_line root 0 0 /root /bin/sh >"$r/etc/passwd"
	passwd_line haproxy 99 99 /var/lib/haproxy /usr/sbin/nologin >>"$r/etc/passwd"
	passwd_line nobody 65534 65534 /nonexistent /usr/sbin/nologin >>"$r/etc/passwd"
	printf 'root:x:0:\nhaproxy:x:99:\nnobody:x:65534:\n' >"$r/etc/group"
	mkdir -p "$r/var/lib/haproxy" "$r/usr/local/etc/haproxy" "$r/usr/local/bin"
	# Like the official image: an option as first argument means haproxy,
	# and haproxy runs in master-worker mode (-W) in the foreground (-db), so
	# SIGUSR1 (STOPSIGNAL) is a soft stop and reloads work.
	cat >"$r/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
case "$1" in -*) set -- haproxy "$@" ;; esac
if [ "$1" = haproxy ]; then
	shift
	set -- haproxy -W -db "$@"
fi
exec "$@"
EOF
	chmod 755 "$r/usr/local/bin/docker-entrypoint.sh"
	ver=$(haproxy -v | sed -nE '1s/^HAProxy version ([^ ]+).*/\1/p')
	pack "$r" "$w/layer.tar" var/lib/haproxy:99:99
	import "$name" "$w/layer.tar" \
		"ENV PATH=$PATH_STD" \
		"ENV HAPROXY_VERSION=$ver" \
		"USER haproxy" \
		"WORKDIR /var/lib/haproxy" \
		"STOPSIGNAL SIGUSR1" \
		'ENTRYPOINT ["docker-entrypoint.sh"]' \
		'CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
}

# ---------------------------------------------------------------------------

for i in "${!build[@]}"; do
	n=${build[$i]}
	w=$tmp/$i
	mkdir -p "$w"
	t0=$(date +%s%N)
	"build_${build_builder[$i]}" "$w" "$n"
	rm -rf "$w"
	t1=$(date +%s%N)
	size=$(docker image inspect -f '{{.Size}}' "$n")
	printf '%s: built stand-in, %s, %d.%ds\n' "$n" "$(human "$size")" $(((t1 - t0) / 1000000000)) $(((t1 - t0) / 100000000 % 10))
done
