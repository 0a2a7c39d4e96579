#!/bin/sh
# Debian's redis-server starts in protected mode, which refuses every client from another
# address when no password is set; the official image builds it with protected mode off (the
# container's network is the boundary). Without a config file, turn it off on the command line;
# a config file given first (it must come first) decides for itself. Files are private to the
# redis user, as in the official image.
set -eu
umask 0077
if [ "${1:-}" = redis-server ]; then
    case "${2:-}" in
        *.conf) ;;
        *) shift; set -- redis-server --protected-mode no "$@" ;;
    esac
fi
exec "$@"
