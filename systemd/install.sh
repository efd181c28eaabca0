#!/bin/sh
# Install (or --uninstall) doorface as a system service. Idempotent. Run as root from the repository root.
#   systemd/install.sh [--dry-run] [--uninstall]     DESTDIR=/some/root systemd/install.sh   (staged install)
# --dry-run prints what would be done and changes nothing; with DESTDIR, files go under DESTDIR and no user,
# venv or systemctl step touches the running system (used by the tests).
set -eu

DRY=0
UNINSTALL=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        --uninstall) UNINSTALL=1 ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/doorface}
ETC=/etc/doorface
UNIT=/etc/systemd/system/doorface.service
MQTT_UNIT=/etc/systemd/system/doorface-mqtt.service
WEB_UNIT=/etc/systemd/system/doorface-web.service
STAGED=0
[ -n "$DESTDIR" ] && STAGED=1

run() {   # run a command, or print it in dry-run mode
    if [ "$DRY" = 1 ]; then echo "would run: $*"; else "$@"; fi
}
system() {   # a step that changes the running system: skipped when staging into DESTDIR
    if [ "$STAGED" = 1 ]; then echo "skipped (DESTDIR): $*"; else run "$@"; fi
}

if [ "$UNINSTALL" = 1 ]; then
    system systemctl disable --now doorface.service || true
    system systemctl disable --now doorface-mqtt.service || true
    system systemctl disable --now doorface-web.service || true
    run rm -f "$DESTDIR$UNIT" "$DESTDIR$MQTT_UNIT" "$DESTDIR$WEB_UNIT"
    system systemctl daemon-reload
    run rm -rf "$DESTDIR$PREFIX"
    echo "doorface removed; kept $ETC and /var/lib/doorface (gallery, access log): delete them by hand if wanted"
    exit 0
fi

if [ "$STAGED" = 0 ] && [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo make install-service), or use --dry-run / DESTDIR=" >&2
    exit 1
fi
for f in models/doorface-dlib-int8.tflite models/doorface-dlib-int8.json models/doorface-int8.tflite \
         models/doorface-int8.json models/doorface-liveness.tflite models/doorface-liveness.json \
         models/doorface-dlib-int8-cohort.npz models/doorface-int8-cohort.npz \
         models/face_detection_short_range.tflite; do
    [ -f "$REPO/$f" ] || { echo "install.sh: $f missing (run make models)" >&2; exit 1; }
done

# 0. 32-bit ARM is refused with one line before anything is touched (README, "Which board").
(cd "$REPO" && python3 -m edge.vision.board supported) || exit 1

# 1. A dedicated system user in the video and gpio groups.
if ! getent passwd doorface >/dev/null 2>&1; then
    system useradd --system --home-dir /var/lib/doorface --no-create-home --shell /usr/sbin/nologin doorface
fi
for g in video gpio; do
    if getent group "$g" >/dev/null 2>&1; then system usermod -aG "$g" doorface; fi
done

# 2. The code, models and a venv. On a Pi the venv sees apt's picamera2 (--system-site-packages).
run mkdir -p "$DESTDIR$PREFIX/models"
run cp "$REPO/models/doorface-dlib-int8.tflite" "$REPO/models/doorface-dlib-int8.json" \
       "$REPO/models/doorface-int8.tflite" "$REPO/models/doorface-int8.json" \
       "$REPO/models/doorface-liveness.tflite" "$REPO/models/doorface-liveness.json" \
       "$REPO/models/doorface-dlib-int8-cohort.npz" "$REPO/models/doorface-int8-cohort.npz" \
       "$REPO/models/face_detection_short_range.tflite" "$DESTDIR$PREFIX/models/"
run cp "$REPO/README.md" "$DESTDIR$PREFIX/README.md"
SITE=""
if [ -e /usr/lib/python3/dist-packages/picamera2 ]; then SITE="--system-site-packages"; fi
if [ ! -x "$DESTDIR$PREFIX/venv/bin/python" ]; then
    system python3 -m venv $SITE "$PREFIX/venv"
fi
system "$PREFIX/venv/bin/pip" install --quiet "$REPO[edge,web]"

# 3. The config: written once, never overwritten (the installed one may hold local changes).
run mkdir -p "$DESTDIR$ETC"
if [ -e "$DESTDIR$ETC/doorface.toml" ]; then
    echo "keeping existing $ETC/doorface.toml"
elif [ "$DRY" = 1 ]; then
    echo "would write $ETC/doorface.toml"
else
    sed -e "s|^embedder = .*|embedder = \"$PREFIX/models/doorface-dlib-int8.tflite\"  # installed; doorface-int8.tflite beside it|" \
        -e "s|^detector = .*|detector = \"$PREFIX/models/face_detection_short_range.tflite\"|" \
        -e "s|^model = \"models/doorface-liveness.tflite\"|model = \"$PREFIX/models/doorface-liveness.tflite\"|" \
        "$REPO/edge/default.toml" > "$DESTDIR$ETC/doorface.toml"
    chmod 0640 "$DESTDIR$ETC/doorface.toml"
fi
# The service user reads its config (root:doorface 0640 in a root:doorface 0750 directory); nobody else does.
run chmod 0750 "$DESTDIR$ETC"
system chown root:doorface "$ETC" "$ETC/doorface.toml"

# 4. The unit, enabled and started.
run mkdir -p "$DESTDIR$(dirname "$UNIT")"
# Bake the relay's pin, polarity and backend into the re-lock helper's last resort. The helper locks the configured
# relay first, then the last good one (recorded by `doorface config --validate` and every daemon start), and this
# pin only when neither can be used: so a pin edited after installing is followed without running this again.
CONF="$DESTDIR$ETC/doorface.toml"
PIN=$(sed -n -e 's/^pin *= *"\([^"]*\)".*/\1/p' -e 's/^pin *= *\([0-9][0-9]*\) *\(#.*\)\{0,1\}$/\1/p' "$CONF" 2>/dev/null \
      | head -n 1)
BACKEND=$(sed -n 's/^backend *= *"\([a-z]*\)".*/\1/p' "$CONF" 2>/dev/null | head -n 1)
PINRE='(GPIO|BCM|BOARD|WPI)?(0|[1-9][0-9]*)|[A-Z][A-Z0-9]*:(0|[1-9][0-9]*)'
if [ "$BACKEND" = jetson ]; then PINRE='[1-9][0-9]*'; fi
if [ -z "$PIN" ]; then
    PIN=17
elif ! printf '%s\n' "$PIN" | grep -Eqx "$PINRE"; then
    echo "install.sh: warning: relay.pin = \"$PIN\" in $ETC/doorface.toml is not a pin name; the re-lock helper's" \
         "last resort is pin 17 (fix the config, then check it: doorface config --validate)" >&2
    PIN=17
fi
EXTRA=""
if grep -q '^active_high *= *false' "$CONF" 2>/dev/null; then EXTRA=" --active-low"; fi
case "$BACKEND" in
    lgpio|rpigpio|native|pigpio|jetson) EXTRA="$EXTRA --fallback-backend $BACKEND" ;;
esac
if [ "$DRY" = 1 ]; then
    echo "would write $UNIT (re-lock last resort: pin $PIN$EXTRA)"
else
    sed -e "s|--pin 17$|--pin $PIN$EXTRA|" "$REPO/systemd/doorface.service" > "$DESTDIR$UNIT"
fi
# The Home Assistant bridge's unit: installed, not enabled (turn on [mqtt], then systemctl enable --now doorface-mqtt).
run cp "$REPO/systemd/doorface-mqtt.service" "$DESTDIR$MQTT_UNIT"
# The web page's unit: installed, not enabled (turn on [web], then systemctl enable --now doorface-web). Its state dir
# and its self-signed certificate are made now, as the door's user (replace them with your own: [web] cert, key).
run cp "$REPO/systemd/doorface-web.service" "$DESTDIR$WEB_UNIT"
system install -d -m 0700 -o doorface -g doorface /var/lib/doorface-web
system runuser -u doorface -- env STATE_DIRECTORY=/var/lib/doorface-web "$PREFIX/venv/bin/doorface" web cert \
    --config "$ETC/doorface.toml" || echo "install.sh: no certificate made (is openssl installed?); doorface web makes it at its first start"
system systemctl daemon-reload
system systemctl enable --now doorface.service
echo "doorface installed. Enroll someone: sudo -u doorface $PREFIX/venv/bin/doorface enroll NAME --camera"
