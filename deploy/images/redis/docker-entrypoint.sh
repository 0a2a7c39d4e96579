#!/bin/sh
# Debian's redis-server starts in protected mode, which refuses every client from another
# address when no password is set; the official image builds it with protected mode off. Turn
# it off on the command line (after the config file, which must come first, when one is given).
set -eu
if [ "${1:-}" = redis-server ]; then
    shift
    case "${1:-}" in
        *.conf) conf=$1; shift; set -- redis-server "$conf" --protected-mode no "$@" ;;
        *) set -- redis-server --protected-mode no "$@" ;;
    esac
fi
exec "$@"
