#!/bin/sh
# Makes what memwatch's TLS overlay (deploy/tls/) and Prometheus need, with openssl and
# htpasswd (Debian: openssl, apache2-utils), into OUT:
#   ca.crt ca.key          a CA of its own (keep ca.key offline; cert-manager can replace all this)
#   server.crt server.key  memwatch's certificate: SANs memwatch, localhost, 127.0.0.1 and each EXTRA_SAN
#   client.crt client.key  Prometheus's client certificate (CN prometheus)
#   password               Prometheus's basic-auth password (random), and its bcrypt hash in:
#   web.yml                memwatch's --web.config.file: TLS, client certificates required, the user
#   secrets.yaml           the Secrets: memwatch/memwatch-web (web.yml, server.crt, server.key, ca.crt)
#                          and monitoring/memwatch-scrape (ca.crt, client.crt, client.key, username, password)
# Usage: make-secrets.sh OUT [EXTRA_SAN...]   (an EXTRA_SAN is a DNS name or an IPv4 address)
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUT [EXTRA_SAN...]" >&2; exit 2; }
out=$1; shift
for tool in openssl htpasswd; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (Debian: apt-get install openssl apache2-utils)" >&2; exit 1; }
done
mkdir -p "$out"
umask 077
cd "$out"
days=${MEMWATCH_CERT_DAYS:-365}

sans="DNS:memwatch,DNS:localhost,IP:127.0.0.1"
for s in "$@"; do
  case $s in
    *[!0-9.]*) sans="$sans,DNS:$s" ;;
    *) sans="$sans,IP:$s" ;;
  esac
done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=memwatch CA" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

leaf() { # name cn extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf server memwatch "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$sans"
leaf client prometheus "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl

openssl rand -hex 24 > password
hash=$(htpasswd -niBC 10 prometheus < password | cut -d: -f2-)
cat > web.yml <<YAML
# memwatch --web.config.file (exporter-toolkit's format). Paths are relative to this file.
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS12
basic_auth_users:
  prometheus: '$hash'
YAML

b64() { base64 -w0 < "$1"; }
cat > secrets.yaml <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: memwatch-web
  namespace: memwatch
type: Opaque
data:
  web.yml: $(b64 web.yml)
  server.crt: $(b64 server.crt)
  server.key: $(b64 server.key)
  ca.crt: $(b64 ca.crt)
---
apiVersion: v1
kind: Secret
metadata:
  name: memwatch-scrape
  namespace: monitoring
type: Opaque
data:
  ca.crt: $(b64 ca.crt)
  client.crt: $(b64 client.crt)
  client.key: $(b64 client.key)
  username: $(printf prometheus | base64 -w0)
  password: $(b64 password)
YAML
echo "wrote $(pwd): ca.crt server.crt/key client.crt/key password web.yml secrets.yaml"
