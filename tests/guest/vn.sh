#!/bin/sh
# vn: the guest side of virtnet's Linux-guest tests and demo (busybox sh).
#
# Installed as /bin/vn in the guest initramfs by `cargo xtask test linux` and
# `cargo xtask demo`; the host types `vn COMMAND ARGS` on the serial console
# and waits for the one line every command ends with:
#
#     VN-END ok|fail COMMAND [key=value ...]
#
# The typed command line (echoed by the console) never contains `VN-END`, so
# the host cannot mistake its own echo for the answer.
#
# Commands:
#   vn up ADDR/PREFIX      eth0 up with ADDR; waits up to 10 s for the link;
#                          reports the MAC, the operstate and the virtio
#                          feature bits the guest driver negotiated
#   vn ping ADDR [COUNT]   ping ADDR (COUNT packets, default 3)
#   vn gen MIB             MIB MiB of random data in /tmp/tx; reports its SHA-256
#   vn send ADDR PORT [FILE]
#                          sends FILE (default /tmp/tx) to ADDR:PORT over TCP
#                          (busybox nc)
#   vn recv PORT           receives one TCP connection on PORT into /tmp/rx
#                          (prints `VN-LISTEN PORT` first, `VN-RECEIVED` when
#                          the connection ends); reports bytes, SHA-256
#   vn stats               eth0's counters (ip -s link)

end() {
    status=$1
    shift
    echo "VN-END $status $*"
}

cmd=$1
[ $# -gt 0 ] && shift
case "$cmd" in
up)
    addr=$1
    ip link set eth0 up || { end fail up "ip link set eth0 up failed"; exit 1; }
    ip addr add "$addr" dev eth0 || { end fail up "ip addr add $addr failed"; exit 1; }
    i=0
    state=$(cat /sys/class/net/eth0/operstate)
    while [ "$state" != up ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
        state=$(cat /sys/class/net/eth0/operstate)
    done
    mac=$(cat /sys/class/net/eth0/address)
    feats=$(cat /sys/class/net/eth0/device/features 2>/dev/null)
    if [ "$state" = up ]; then
        end ok up "operstate=$state" "mac=$mac" "features=$feats"
    else
        end fail up "operstate=$state" "mac=$mac" "features=$feats"
    fi
    ;;
ping)
    if ping -c "${2:-3}" -W 2 "$1"; then
        end ok ping "$1"
    else
        end fail ping "$1"
    fi
    ;;
gen)
    rm -f /tmp/tx
    if dd if=/dev/urandom of=/tmp/tx bs=1048576 count="$1" 2>/dev/null; then
        sum=$(sha256sum /tmp/tx | cut -d' ' -f1)
        end ok gen "bytes=$(wc -c </tmp/tx)" "sha256=$sum"
    else
        end fail gen "dd failed"
    fi
    ;;
send)
    if nc "$1" "$2" <"${3:-/tmp/tx}"; then
        end ok send "$1:$2"
    else
        end fail send "$1:$2"
    fi
    ;;
recv)
    rm -f /tmp/rx
    echo "VN-LISTEN $1"
    if nc -l -p "$1" </dev/null >/tmp/rx; then
        echo VN-RECEIVED
        sum=$(sha256sum /tmp/rx | cut -d' ' -f1)
        bytes=$(wc -c </tmp/rx)
        end ok recv "bytes=$bytes" "sha256=$sum"
    else
        end fail recv "nc -l failed"
    fi
    ;;
stats)
    ip -s link show eth0
    end ok stats
    ;;
*)
    end fail "$cmd" "unknown command"
    ;;
esac
