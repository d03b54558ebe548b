#!/usr/bin/env bash
# Creates a throwaway CA and a broker certificate for localhost / 127.0.0.1 with the
# openssl CLI, for the tests and the README's security example. Not for production: the
# CA key sits next to the certificates and everything expires in 30 days.
#
# usage: scripts/make-test-certs.sh [DIR]   (default: ./certs)
# writes: DIR/ca.crt (truststore for clients), DIR/broker.pem (certificate + key, the
#         broker's ssl.keystore.location), DIR/client.pem + DIR/client.crt/.key (a client
#         certificate signed by the same CA, for ssl.client.auth)
set -euo pipefail
dir="${1:-certs}"
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=agentlog test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout ca.key -out ca.crt 2>/dev/null
sign() { # name subject extensions
  openssl req "${ec[@]}" -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  cat "$1.crt" "$1.key" >"$1.pem"
  rm -f "$1.csr" "$1.ext"
}
sign broker "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1
basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth"
sign client "/CN=agentlog-test-client" "basicConstraints=CA:FALSE
extendedKeyUsage=clientAuth"
echo "certificates in $(pwd): ca.crt broker.pem client.pem"
