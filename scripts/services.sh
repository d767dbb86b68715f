#!/usr/bin/env bash
# Start/stop the project-local PostgreSQL and Redis used for development, tests and CI.
#
#   scripts/services.sh up      install (if needed), start both, create the database, write .env
#   scripts/services.sh down    stop both (fine if they are not running)
#   scripts/services.sh status  print the state of each (exit 3 if a local one is not running)
#   scripts/services.sh env     print the four .env lines `up` would write
#
# Environment:
#   PS_PG_PORT (55432), PS_REDIS_PORT (56379)   ports of the local servers, bound to 127.0.0.1
#   PATIENT_SEARCH_DATABASE_URL  if set, no local PostgreSQL is started; the URL is used as is
#   PATIENT_SEARCH_REDIS_URL     likewise for Redis; set-but-empty means "no Redis"
#                                (the app then uses its in-process cache)
#
# These servers are private to this checkout: they never touch the system's
# servers on 5432/6379, and live under <repo>/.data (or under /var/tmp when
# the `postgres` user cannot reach the repo, e.g. a checkout under /root).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
readonly REPO_ROOT
readonly PG_PORT="${PS_PG_PORT:-55432}"
readonly REDIS_PORT="${PS_REDIS_PORT:-56379}"
readonly DB_NAME=patient_search
readonly PG_SUPERUSER=postgres   # database role; trust auth, so no password
readonly PG_OS_USER=postgres     # OS user that runs initdb/postgres when we are root
readonly MIN_PG_MAJOR=15
readonly START_TIMEOUT=30        # seconds to wait for each server
readonly ENV_FILE="$REPO_ROOT/.env"
readonly LOCAL_DB_URL="postgresql://$PG_SUPERUSER@127.0.0.1:$PG_PORT/$DB_NAME"
readonly LOCAL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# Set by resolve_data_root / find_pg_bin.
DATA_ROOT="" PG_DATA="" REDIS_DIR="" LOG_DIR="" PG_LOG="" REDIS_LOG="" REDIS_PIDFILE=""
SECRET_FILE="" PG_BIN=""

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_root() { [[ $EUID -eq 0 ]]; }

# ---------------------------------------------------------------- configuration

# A URL in the environment means "someone else runs this server". The one
# exception is our own local URL: a Makefile that exports .env would otherwise
# make `up` skip the very servers it is supposed to start.
pg_is_external() {
  [[ -n ${PATIENT_SEARCH_DATABASE_URL:-} && $PATIENT_SEARCH_DATABASE_URL != "$LOCAL_DB_URL" ]]
}
redis_is_external() {
  # ${VAR+x}: set-but-empty counts as configured ("no Redis").
  [[ -n ${PATIENT_SEARCH_REDIS_URL+x} && $PATIENT_SEARCH_REDIS_URL != "$LOCAL_REDIS_URL" ]]
}
db_url() { if pg_is_external; then echo "$PATIENT_SEARCH_DATABASE_URL"; else echo "$LOCAL_DB_URL"; fi; }
redis_url() { if redis_is_external; then echo "$PATIENT_SEARCH_REDIS_URL"; else echo "$LOCAL_REDIS_URL"; fi; }

# Hide the password of a URL before printing it.
mask_url() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

check_ports() {
  local p
  for p in "$PG_PORT" "$REDIS_PORT"; do
    [[ $p =~ ^[0-9]+$ && $p -ge 1 && $p -le 65535 ]] || die "invalid port '$p'"
  done
}

# ---------------------------------------------------------------- data location

# Can the OS user that runs postgres reach $1? Path resolution fails on any
# untraversable ancestor, so `test -x` on the directory covers the whole path.
# Before the postgres user exists, `nobody` is an equivalent unprivileged probe,
# which keeps the choice of data root the same before and after installing.
pg_can_traverse() {
  is_root || return 0   # not root: postgres runs as us
  local user=$PG_OS_USER
  id -u "$user" >/dev/null 2>&1 || user=nobody
  (cd / && runuser -u "$user" -- test -x "$1") 2>/dev/null
}

# Deterministic from the repo path, so `down`/`status` find it even without the symlink.
fallback_root() {
  local hash
  hash="$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-10)"
  echo "/var/tmp/patient-search-$hash"
}

# Order matters: an existing .data symlink wins (it records an earlier choice),
# then an in-repo .data the postgres user can use, then the /var/tmp fallback.
resolve_data_root() {
  local link="$REPO_ROOT/.data"
  if [[ -L $link ]]; then
    DATA_ROOT="$(readlink -f "$link")"
  elif pg_can_traverse "$REPO_ROOT"; then
    DATA_ROOT="$link"
  else
    DATA_ROOT="$(fallback_root)"
  fi
  PG_DATA="$DATA_ROOT/pg"
  REDIS_DIR="$DATA_ROOT/redis"
  LOG_DIR="$DATA_ROOT/log"
  PG_LOG="$LOG_DIR/postgresql.log"
  REDIS_LOG="$LOG_DIR/redis.log"
  REDIS_PIDFILE="$REDIS_DIR/redis.pid"
  SECRET_FILE="$DATA_ROOT/jwt_secret"
}

# Create the directory tree (and the .data symlink for the fallback case).
ensure_data_root() {
  local link="$REPO_ROOT/.data"
  mkdir -p "$DATA_ROOT" "$REDIS_DIR" "$LOG_DIR"
  chmod 755 "$DATA_ROOT" "$LOG_DIR"   # postgres must traverse these whatever the umask
  if [[ $DATA_ROOT != "$link" ]]; then
    if [[ ! -e $link && ! -L $link ]]; then
      ln -s "$DATA_ROOT" "$link"
    fi
    log "postgres cannot traverse $REPO_ROOT; data lives in $DATA_ROOT"
    [[ -L $link ]] && log "  ($link is a symlink to it)"
  fi
  pg_can_traverse "$DATA_ROOT" || die "the $PG_OS_USER user cannot traverse $DATA_ROOT"
  # postgres (via pg_ctl -l) writes its log here.
  if is_root && id -u "$PG_OS_USER" >/dev/null 2>&1; then
    chown "$PG_OS_USER": "$LOG_DIR"
  fi
}

# Serialise concurrent `up`/`down` (parallel make targets, CI retries). The
# servers we start must not inherit fd 9, or they would hold the lock forever:
# see the 9>&- in as_pg and start_redis.
take_lock() {
  command -v flock >/dev/null || return 0
  exec 9>"$DATA_ROOT/.lock"
  flock -w 120 9 || die "another services.sh is holding $DATA_ROOT/.lock"
}

# ---------------------------------------------------------------- installation

pg_major_of() { "$1/postgres" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/'; }

# Echo the bin dir of the highest installed PostgreSQL >= MIN_PG_MAJOR (or of
# the version an existing cluster was created with). Debian keeps one bin dir
# per major under /usr/lib/postgresql; pg_config covers other layouts. (On
# Debian /usr/bin/pg_config may belong to libpq-dev and point at a bin dir
# without a server, hence the check for postgres/initdb/pg_ctl.)
find_pg_bin() {
  local want="${1:-}" dirs=() d best="" best_major=0 major
  dirs=(/usr/lib/postgresql/*/bin)
  if command -v pg_config >/dev/null; then dirs+=("$(pg_config --bindir 2>/dev/null || true)"); fi
  for d in "${dirs[@]}"; do
    [[ -x $d/postgres && -x $d/initdb && -x $d/pg_ctl && -x $d/pg_isready ]] || continue
    major="$(pg_major_of "$d")" || continue
    [[ $major =~ ^[0-9]+$ ]] || continue
    if [[ -n $want ]]; then
      [[ $major == "$want" ]] && { echo "$d"; return 0; }
    elif (( major >= MIN_PG_MAJOR && major > best_major )); then
      best="$d" best_major=$major
    fi
  done
  [[ -n $best ]] && echo "$best"
}

# The extensions the schema needs ship in contrib; check their control files.
pg_has_contrib() {
  local bin=$1 share ext
  if [[ -x $bin/pg_config ]]; then
    share="$("$bin/pg_config" --sharedir)"
  else
    share="/usr/share/postgresql/$(pg_major_of "$bin")"
  fi
  for ext in pg_trgm fuzzystrmatch unaccent pg_stat_statements; do
    [[ -f $share/extension/$ext.control ]] || return 1
  done
}

pg_installed() { local b; b="$(find_pg_bin)" && [[ -n $b ]] && pg_has_contrib "$b"; }
redis_installed() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; }

apt_install() {
  local sudo=()
  if ! is_root; then
    command -v sudo >/dev/null || die "need root to run: apt-get install -y $*"
    sudo=(sudo)
  fi
  log "installing: $* (apt-get)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# The distro's default `postgresql` may be older than 15 (e.g. Ubuntu 22.04 has 14);
# then try an explicitly versioned package if the configured apt sources have one.
install_versioned_pg() {
  local v
  for v in 18 17 16 15; do
    if apt-cache policy "postgresql-$v" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      apt_install "postgresql-$v" "postgresql-contrib"
      return 0
    fi
  done
  return 1
}

# Installing postgresql/redis-server may also start the distro's own servers on
# 5432/6379; that is harmless, we never use or touch them.
ensure_packages() {
  local pkgs=()
  if ! pg_is_external && ! pg_installed; then pkgs+=(postgresql postgresql-contrib); fi
  if ! redis_is_external && ! redis_installed; then pkgs+=(redis-server); fi
  (( ${#pkgs[@]} )) || return 0
  apt_install "${pkgs[@]}"
  if ! pg_is_external && ! pg_installed; then
    install_versioned_pg || true
    pg_installed || die "need PostgreSQL >= $MIN_PG_MAJOR with contrib; apt did not provide it" \
                        "(add the apt.postgresql.org repository and rerun)"
  fi
  if ! redis_is_external; then
    redis_installed || die "redis-server is still missing after apt-get install"
  fi
}

# initdb and postgres refuse to run as root.
ensure_pg_os_user() {
  is_root || return 0
  id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
  log "creating system user $PG_OS_USER"
  useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
          --shell /bin/bash "$PG_OS_USER"
}

# ---------------------------------------------------------------- PostgreSQL

# Run a server-side command as the postgres user. cd / avoids "could not change
# directory" warnings from an unreadable cwd; LC_ALL=C keeps a locale the machine
# may lack (inherited from a developer's shell) out of the server's environment.
as_pg() {
  if is_root; then
    (cd / && runuser -u "$PG_OS_USER" -- env LC_ALL=C "$@") 9>&-
  else
    (cd / && env LC_ALL=C "$@") 9>&-
  fi
}

# A killed server stays a zombie until its parent (init) reaps it, which some
# container inits do late; kill -0 (and postgres' own lock-file check) still
# sees a zombie as alive.
pid_alive() {
  [[ $1 =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null || return 1
  [[ "$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# Wait (bounded) for a zombie to be reaped so postgres will not trip over its pid.
wait_reaped() {
  local i
  for ((i = 0; i < 50; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.2
  done
  log "warning: pid $1 is still a zombie; its parent has not reaped it"
}

# Any process listening on 127.0.0.1:$1?
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Our postmaster is running iff the pid in postmaster.pid is alive AND its cwd is
# our data dir (postgres chdirs there). This rejects pids that were reused by
# some other process after a crash or a container restart.
pg_pid() {
  local pidfile="$PG_DATA/postmaster.pid" pid
  [[ -f $pidfile ]] || return 1
  pid="$(head -n1 "$pidfile")"
  pid_alive "$pid" || return 1
  [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$(readlink -f "$PG_DATA")" ]] || return 1
  echo "$pid"
}
pg_running() { pg_pid >/dev/null; }
# Line 4 of postmaster.pid is the port the server actually listens on.
pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null; }

# A postmaster.pid whose pid is dead is left to postgres: it removes the file
# itself after checking that no old backend still holds the shared memory named
# there. Two cases would still block startup: the dead postmaster is an unreaped
# zombie (wait for it), or its pid now belongs to another live process after a
# crash or container restart (pg_running has ruled out that it is ours: drop
# the lock files naming it; only our postmaster uses this socket dir).
clear_stale_pg_pidfile() {
  local pidfile="$PG_DATA/postmaster.pid" pid
  [[ -f $pidfile ]] && ! pg_running || return 0
  pid="$(head -n1 "$pidfile")"
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  if kill -0 "$pid" 2>/dev/null && ! pid_alive "$pid"; then
    wait_reaped "$pid"
  elif pid_alive "$pid"; then
    log "removing stale $pidfile (pid $pid is now another process)"
    rm -f "$pidfile" "$PG_DATA"/.s.PGSQL.*.lock
  fi
}

pick_locale() {
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then echo C.UTF-8; else echo C; fi
}

init_cluster() {
  [[ -f $PG_DATA/PG_VERSION ]] && return 0
  if [[ -d $PG_DATA && -n "$(ls -A "$PG_DATA")" ]]; then
    die "$PG_DATA is not empty but holds no cluster (aborted initdb?); remove it and rerun"
  fi
  local locale initlog="$LOG_DIR/initdb.log"
  locale="$(pick_locale)"
  [[ $locale == C ]] && log "C.UTF-8 locale missing; using --locale=C (still UTF8 encoding)"
  mkdir -p "$PG_DATA"
  is_root && chown "$PG_OS_USER": "$PG_DATA"
  chmod 700 "$PG_DATA"
  log "initialising cluster in $PG_DATA (PostgreSQL $(pg_major_of "$PG_BIN"), locale $locale)"
  if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" --auth=trust \
             --encoding=UTF8 --locale="$locale" >"$initlog" 2>&1; then
    tail -n 20 "$initlog" >&2
    die "initdb failed; see $initlog"
  fi
}

# Quote a value for postgresql.conf.
conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# Our settings live in their own file, rewritten on every start, so changes
# here reach existing clusters. postgresql.conf just includes it (once).
write_pg_conf() {
  local conf="$PG_DATA/postgresql.conf" inc="$PG_DATA/patient_search.conf"
  local socket="$PG_DATA/.s.PGSQL.$PG_PORT"
  # sun_path is 108 bytes; a deep checkout would make postgres fail obscurely.
  (( ${#socket} < 108 )) || die "unix socket path too long (${#socket} bytes): $socket"
  cat >"$inc" <<EOF
# Written by scripts/services.sh on every start; edits here are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = $(conf_quote "$PG_DATA")
max_connections = 200
shared_buffers = 1GB
effective_cache_size = 8GB
work_mem = 16MB
maintenance_work_mem = 512MB
random_page_cost = 1.1
jit = off
# A bulk load writes gigabytes of WAL: checkpoints every 1 GB (the default) would add
# full-page images all along it (docs/decisions/0009-bulk-initial-load.md).
max_wal_size = 8GB
checkpoint_timeout = 15min
wal_compression = lz4
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
log_min_duration_statement = 100
log_lock_waits = on
# Bind parameters carry PHI (names, phones): never write their values to the server log.
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  is_root && chown "$PG_OS_USER": "$inc"
  grep -q "^include_if_exists = 'patient_search.conf'" "$conf" ||
    printf "\n# Project settings (scripts/services.sh)\ninclude_if_exists = 'patient_search.conf'\n" >>"$conf"
}

pg_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres -t 1
}

wait_for_pg() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until pg_ready; do
    if (( SECONDS >= deadline )); then
      tail -n 20 "$PG_LOG" >&2 || true
      die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT within ${START_TIMEOUT}s; see $PG_LOG"
    fi
    sleep 0.5
  done
}

start_pg() {
  clear_stale_pg_pidfile
  port_open "$PG_PORT" &&
    die "127.0.0.1:$PG_PORT is already used by another process; set PS_PG_PORT to a free port"
  write_pg_conf
  touch "$PG_LOG"
  is_root && chown "$PG_OS_USER": "$PG_LOG"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  # -w detects a postmaster that dies during startup; pg_isready then confirms TCP.
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" start >/dev/null; then
    tail -n 20 "$PG_LOG" >&2 || true
    die "PostgreSQL failed to start; see $PG_LOG"
  fi
  wait_for_pg
}

psql_local() {
  PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
    -U "$PG_SUPERUSER" "$@"
}

ensure_database() {
  local exists
  exists="$(psql_local -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")"
  [[ $exists == 1 ]] && return 0
  log "creating database $DB_NAME"
  psql_local -d postgres -c "CREATE DATABASE $DB_NAME OWNER $PG_SUPERUSER"
}

# Use the binaries matching an existing cluster; a newer major cannot open it.
select_pg_bin() {
  local want=""
  [[ -f $PG_DATA/PG_VERSION ]] && want="$(cat "$PG_DATA/PG_VERSION")"
  PG_BIN="$(find_pg_bin "$want")" || true
  if [[ -z $PG_BIN ]]; then
    [[ -n $want ]] && die "cluster in $PG_DATA is PostgreSQL $want but its binaries are" \
                          "not installed; install postgresql-$want or remove $PG_DATA"
    die "no PostgreSQL >= $MIN_PG_MAJOR server binaries found"
  fi
}

pg_up() {
  select_pg_bin
  init_cluster
  if pg_running; then
    local port; port="$(pg_running_port)"
    [[ $port == "$PG_PORT" ]] ||
      log "warning: PostgreSQL is running on port $port, not $PG_PORT; run down + up to switch"
    # Settings may have changed since it started; reloadable ones apply at once.
    write_pg_conf
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null
  else
    start_pg
  fi
  ensure_database
}

pg_down() {
  local pid
  if ! pid="$(pg_pid)"; then
    clear_stale_pg_pidfile
    log "PostgreSQL: not running"
    return 0
  fi
  log "stopping PostgreSQL (pid $pid)"
  PG_BIN="$(find_pg_bin "$(cat "$PG_DATA/PG_VERSION" 2>/dev/null)")" || true
  if [[ -n $PG_BIN ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
  else
    kill -INT "$pid"   # what pg_ctl -m fast sends; binaries gone, server still up
  fi
}

# ---------------------------------------------------------------- Redis

# Like pg_pid: alive and cwd == our redis dir (redis chdirs to --dir).
redis_pid() {
  local pid
  [[ -f $REDIS_PIDFILE ]] || return 1
  pid="$(head -n1 "$REDIS_PIDFILE")"
  pid_alive "$pid" || return 1
  [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$(readlink -f "$REDIS_DIR")" ]] || return 1
  echo "$pid"
}

redis_cmd() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_ping() { [[ "$(redis_cmd ping 2>/dev/null)" == PONG ]]; }

# Is whatever answers on our port a Redis serving our directory (pidfile lost)?
redis_port_is_ours() {
  local dir
  dir="$(redis_cmd --raw config get dir 2>/dev/null | sed -n 2p)" || return 1
  [[ -n $dir && $dir == "$(readlink -f "$REDIS_DIR")" ]]
}

wait_for_redis() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until redis_ping; do
    if (( SECONDS >= deadline )); then
      tail -n 20 "$REDIS_LOG" >&2 || true
      die "Redis did not answer on 127.0.0.1:$REDIS_PORT within ${START_TIMEOUT}s; see $REDIS_LOG"
    fi
    sleep 0.2
  done
}

start_redis() {
  # A pidfile left by a crashed Redis must not make us think it is running.
  if [[ -f $REDIS_PIDFILE ]]; then
    log "removing stale $REDIS_PIDFILE"
    rm -f "$REDIS_PIDFILE"
  fi
  if port_open "$REDIS_PORT"; then
    redis_port_is_ours && return 0
    die "127.0.0.1:$REDIS_PORT is already used by another process; set PS_REDIS_PORT to a free port"
  fi
  log "starting Redis on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"
  # No persistence: it is a cache, and a dev box should not write dumps.
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir "$REDIS_DIR" \
    --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" >/dev/null 9>&-
  wait_for_redis
}

redis_up() {
  if redis_pid >/dev/null; then wait_for_redis; else start_redis; fi
}

redis_down() {
  local pid="" i
  pid="$(redis_pid)" || pid=""
  if [[ -z $pid ]] && ! { port_open "$REDIS_PORT" && redis_port_is_ours; }; then
    rm -f "$REDIS_PIDFILE"
    log "Redis: not running"
    return 0
  fi
  log "stopping Redis${pid:+ (pid $pid)}"
  redis_cmd shutdown nosave >/dev/null 2>&1 || true
  for ((i = 0; i < 50; i++)); do
    if [[ -n $pid ]]; then kill -0 "$pid" 2>/dev/null || break
    else port_open "$REDIS_PORT" || break; fi
    sleep 0.2
  done
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  rm -f "$REDIS_PIDFILE"
}

# ---------------------------------------------------------------- .env

# Value of KEY in .env ("export " prefix and surrounding quotes tolerated).
env_file_value() {
  [[ -f $ENV_FILE ]] || return 0
  sed -nE "s/^[[:space:]]*(export[[:space:]]+)?$1=(.*)$/\2/p" "$ENV_FILE" | tail -n1 |
    sed -E "s/^\"(.*)\"\$/\1/; s/^'(.*)'\$/\1/"
}

# 36 random bytes -> exactly 48 base64url characters, no padding.
new_secret() { head -c 36 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n='; }

# Stable across runs: .env's value wins, then the copy kept in the data dir,
# else a new one. The data-dir copy survives `rm .env`.
jwt_secret() {
  local secret
  secret="$(env_file_value PATIENT_SEARCH_JWT_SECRET)"
  [[ -z $secret && -s $SECRET_FILE ]] && secret="$(<"$SECRET_FILE")"
  [[ -n $secret ]] || secret="$(new_secret)"
  if [[ ! -s $SECRET_FILE || "$(<"$SECRET_FILE")" != "$secret" ]]; then
    mkdir -p "$DATA_ROOT"
    (umask 077 && printf '%s\n' "$secret" >"$SECRET_FILE")
  fi
  echo "$secret"
}

env_lines() {
  printf 'PATIENT_SEARCH_DATABASE_URL=%s\n' "$(db_url)"
  printf 'PATIENT_SEARCH_REDIS_URL=%s\n' "$(redis_url)"
  printf 'PATIENT_SEARCH_ENV=dev\n'
  printf 'PATIENT_SEARCH_JWT_SECRET=%s\n' "$(jwt_secret)"
}

# Replace our four keys in place (keeps the file's order, so reruns cause no
# diff), keep every other line, append keys that were missing.
write_env_file() {
  local tmp old=/dev/null new
  [[ -f $ENV_FILE ]] && old="$ENV_FILE"
  new="$(env_lines)"
  tmp="$(mktemp "$ENV_FILE.XXXXXX")"
  NEW_LINES="$new" awk '
    BEGIN {
      n = split(ENVIRON["NEW_LINES"], lines, "\n")
      for (i = 1; i <= n; i++) { k = lines[i]; sub(/=.*/, "", k); val[k] = lines[i]; order[i] = k }
    }
    {
      k = $0; sub(/^[ \t]*(export[ \t]+)?/, "", k); sub(/=.*/, "", k)
      if (k in val) { if (!(k in done)) print val[k]; done[k] = 1; next }
      print
    }
    END { for (i = 1; i <= n; i++) if (!(order[i] in done)) print val[order[i]] }
  ' "$old" >"$tmp"
  chmod 600 "$tmp"   # it holds a secret
  mv -f "$tmp" "$ENV_FILE"
  log "wrote $ENV_FILE"
}

# ---------------------------------------------------------------- status

# Prints one line per service; returns non-zero if a local one is down.
print_status() {
  local rc=0 pid
  if pg_is_external; then
    log "postgres: external, $(mask_url "$PATIENT_SEARCH_DATABASE_URL")"
  elif pid="$(pg_pid)"; then
    log "postgres: running (pid $pid) on 127.0.0.1:$(pg_running_port), data $PG_DATA, log $PG_LOG"
  elif [[ -f $PG_DATA/PG_VERSION ]]; then
    log "postgres: stopped (data $PG_DATA)"; rc=3
  else
    log "postgres: not initialised (would live in $PG_DATA)"; rc=3
  fi
  if redis_is_external; then
    if [[ -z $PATIENT_SEARCH_REDIS_URL ]]; then
      log "redis: disabled (PATIENT_SEARCH_REDIS_URL is empty: in-process cache)"
    else
      log "redis: external, $(mask_url "$PATIENT_SEARCH_REDIS_URL")"
    fi
  elif pid="$(redis_pid)" && redis_ping; then
    log "redis: running (pid $pid) on 127.0.0.1:$REDIS_PORT, log $REDIS_LOG"
  else
    log "redis: stopped"; rc=3
  fi
  return "$rc"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  ensure_packages
  pg_is_external || ensure_pg_os_user
  resolve_data_root
  ensure_data_root
  take_lock
  pg_is_external || pg_up
  redis_is_external || redis_up
  write_env_file
  print_status || true
}

cmd_down() {
  # Stops whatever local servers exist, whatever the URLs say: both only touch
  # processes whose cwd is our data dir, never the system servers.
  resolve_data_root
  [[ -d $DATA_ROOT ]] || { log "nothing to stop (no $DATA_ROOT)"; return 0; }
  take_lock
  pg_down
  redis_down
}

cmd_status() { resolve_data_root; print_status; }

cmd_env() { resolve_data_root; env_lines; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
}

main() {
  check_ports
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
