"""Test certificates made with the `openssl` command line (stdlib + openssl).

CertFactory(workdir) makes a root CA and an intermediate CA signed by it;
leaf(...) makes a leaf signed by the intermediate, written as
NAME.crt (leaf first, then the intermediate: the full chain a server sends)
and NAME.key. A client that trusts only the root (ca_file) can verify a
server only if the server sends the intermediate too.

Every certificate gets a serial number of its own (`serial` on the Leaf),
so a test can tell which one a server sent.
"""

import itertools
import os
import ssl
import subprocess

_serials = itertools.count(0x5100)


def openssl(*args, cwd=None, timeout=60):
    p = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({p.returncode}):\n"
                           f"{p.stdout.decode(errors='replace')}\n{p.stderr.decode(errors='replace')}")
    return p.stdout.decode("utf-8", "replace")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    with open(path) as f:
        return f.read()


def _genkey(path, kind):
    if kind == "ec":
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    elif kind == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    else:
        raise ValueError(kind)


class Leaf:
    """One leaf certificate: files and what identifies it."""

    def __init__(self, name, cert_file, key_file, leaf_pem, serial, cn, sans, kind):
        self.name = name
        self.cert_file = cert_file    # leaf + intermediate (PEM)
        self.key_file = key_file
        self.leaf_pem = leaf_pem      # the leaf alone (PEM)
        self.leaf_der = ssl.PEM_cert_to_DER_cert(leaf_pem)
        self.serial = serial          # int
        self.cn = cn
        self.sans = list(sans)
        self.kind = kind              # "ec" or "rsa"

    def entry(self):
        """The `tls.certificates[]` config entry."""
        return {"cert_file": self.cert_file, "key_file": self.key_file}

    def __repr__(self):
        return f"<Leaf {self.name} CN={self.cn} serial={self.serial:#x} {self.kind}>"


class CertFactory:
    def __init__(self, workdir):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.ca_file = os.path.join(workdir, "root-ca.crt")
        self.ca_key = os.path.join(workdir, "root-ca.key")
        self.int_file = os.path.join(workdir, "intermediate.crt")
        self.int_key = os.path.join(workdir, "intermediate.key")
        _genkey(self.ca_key, "ec")
        ext = os.path.join(workdir, "ca.ext")
        _write(ext, "[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                    "subjectKeyIdentifier=hash\n")
        openssl("req", "-x509", "-new", "-key", self.ca_key, "-subj", "/CN=sluice test root CA",
                "-days", "30", "-set_serial", str(next(_serials)), "-config", ext, "-extensions", "v3_ca",
                "-out", self.ca_file)
        _genkey(self.int_key, "ec")
        csr = os.path.join(workdir, "intermediate.csr")
        openssl("req", "-new", "-key", self.int_key, "-subj", "/CN=sluice test intermediate CA", "-out", csr,
                "-config", ext)
        int_ext = os.path.join(workdir, "intermediate.ext")
        _write(int_ext, "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
                        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", self.ca_key,
                "-set_serial", str(next(_serials)), "-days", "30", "-extfile", int_ext, "-out", self.int_file)

    def leaf(self, name, cn, sans=(), kind="ec", chain=True):
        """A leaf for CN `cn` with DNS SANs `sans` (none: CN only), key `kind`
        ("ec" P-256 or "rsa" 2048), signed by the intermediate. Files
        NAME.crt (leaf + intermediate unless chain=False) and NAME.key."""
        key_file = os.path.join(self.dir, f"{name}.key")
        cert_file = os.path.join(self.dir, f"{name}.crt")
        leaf_file = os.path.join(self.dir, f"{name}.leaf.crt")
        csr = os.path.join(self.dir, f"{name}.csr")
        ext = os.path.join(self.dir, f"{name}.ext")
        _genkey(key_file, kind)
        openssl("req", "-new", "-key", key_file, "-subj", f"/CN={cn}", "-out", csr,
                "-config", os.path.join(self.dir, "ca.ext"))
        usage = "digitalSignature" if kind == "ec" else "digitalSignature,keyEncipherment"
        lines = ["basicConstraints=critical,CA:FALSE", f"keyUsage=critical,{usage}",
                 "extendedKeyUsage=serverAuth", "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
        if sans:
            lines.append("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans))
        _write(ext, "\n".join(lines) + "\n")
        serial = next(_serials)
        openssl("x509", "-req", "-in", csr, "-CA", self.int_file, "-CAkey", self.int_key,
                "-set_serial", str(serial), "-days", "30", "-extfile", ext, "-out", leaf_file)
        leaf_pem = _read(leaf_file)
        _write(cert_file, leaf_pem + (_read(self.int_file) if chain else ""))
        return Leaf(name, cert_file, key_file, leaf_pem, serial, cn, sans, kind)


def client_context(ca_file=None, minimum=None, maximum=None, alpn=None, ciphers=None):
    """An ssl client context: verifying against `ca_file` only (hostname not
    checked, so any SNI may be sent), or not verifying at all when None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca_file:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx
