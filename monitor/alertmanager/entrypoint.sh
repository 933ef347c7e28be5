#!/bin/sh
# Render alertmanager.yml with the webhook URL from $ALERT_WEBHOOK_URL, then exec Alertmanager
# with the rendered file and the given arguments. Used by docker-compose.yml (busybox sh in the
# prom/alertmanager image) and by monitor/localstack.py (with the paths below overridden).
set -eu

: "${ALERT_WEBHOOK_URL:?is not set: put the URL alerts should be POSTed to in monitor/.env}"
case "$ALERT_WEBHOOK_URL" in
    http://?* | https://?*) ;;
    *)
        echo "ALERT_WEBHOOK_URL must be an http:// or https:// URL, got: $ALERT_WEBHOOK_URL" >&2
        exit 2
        ;;
esac
case "$ALERT_WEBHOOK_URL" in
    *"'"* | *' '*)
        echo "ALERT_WEBHOOK_URL must not contain quotes or spaces" >&2
        exit 2
        ;;
esac

template="${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}"
config="${ALERTMANAGER_CONFIG:-/tmp/alertmanager.yml}"
binary="${ALERTMANAGER_BIN:-/bin/alertmanager}"

# Escape what is special on the right-hand side of sed's s||| (\, & and the | delimiter).
escaped=$(printf '%s\n' "$ALERT_WEBHOOK_URL" | sed -e 's/[\\&|]/\\&/g')
sed -e "s|[\$]{ALERT_WEBHOOK_URL}|$escaped|g" "$template" > "$config"

exec "$binary" --config.file="$config" "$@"
