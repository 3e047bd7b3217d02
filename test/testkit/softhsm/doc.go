// Package softhsm makes a real PKCS#11 token for tests: a SoftHSM2 token
// (Debian's softhsm2, which scripts/deps.sh installs) in a test's temporary
// directory, selected through SOFTHSM2_CONF. It never touches the
// machine's own tokens.
package softhsm
