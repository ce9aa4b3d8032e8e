#!/bin/bash
# Runs the real iptux GTK GUI headless; called by tests/lan/iptux.rs INSIDE a
# test namespace (`ip netns exec NS unshare --uts gui.sh HOME DISPLAY`):
# its own host name (private UTS namespace), Xvfb on its own display, a
# private D-Bus session bus (address written to HOME/bus.addr), a fresh HOME.
# iptux's stderr goes to HOME/iptux.log. When iptux exits, Xvfb and the bus end.
#   IPTUX_HOSTNAME  the host name iptux announces
#   IPTUX_PRELOAD   LD_PRELOAD for iptux only (the 0.8.3 folder-receive fix)
set -euo pipefail
H=$1; D=$2
hostname "$IPTUX_HOSTNAME"
export HOME=$H XDG_CONFIG_HOME=$H/.config XDG_CACHE_HOME=$H/.cache XDG_DATA_HOME=$H/.local/share XDG_RUNTIME_DIR=$H/run
mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
export NO_AT_BRIDGE=1 GTK_A11Y=none GDK_BACKEND=x11 LANG=C.UTF-8 LC_ALL=C.UTF-8
Xvfb ":$D" -nolisten tcp -screen 0 1280x900x24 >"$H/xvfb.log" 2>&1 &
XPID=$!
trap 'kill $XPID 2>/dev/null' EXIT
for _ in $(seq 50); do [[ -S /tmp/.X11-unix/X$D ]] && break; sleep 0.1; done
export DISPLAY=":$D"
dbus-run-session -- bash -c 'echo "$DBUS_SESSION_BUS_ADDRESS" > "$HOME/bus.addr"; env ${IPTUX_PRELOAD:+LD_PRELOAD=$IPTUX_PRELOAD} iptux >"$HOME/iptux.log" 2>&1; echo "iptux-exit=$?" >>"$HOME/iptux.log"' 2>"$H/dbus.log"
