#!/bin/sh
# What the official nginx image's entrypoint does that the compose file relies on
# (20-envsubst-on-templates.sh): render /etc/nginx/templates/*.template into /etc/nginx/conf.d/,
# substituting only the variables whose names match NGINX_ENVSUBST_FILTER.
set -e
mkdir -p /etc/nginx/conf.d
vars=$(env | cut -d= -f1 | grep -E "${NGINX_ENVSUBST_FILTER:-.}" | sed 's/^/$/' | tr '\n' ' ')
for t in /etc/nginx/templates/*.template; do
  [ -e "$t" ] || continue
  out="/etc/nginx/conf.d/$(basename "$t" .template)"
  envsubst "$vars" < "$t" > "$out"
done
exec "$@"
