"""Run on a cluster's node (EC2 user-data, the ECS container bootstrap) before Dask starts: give the
node's Python what the kernel's lock wants (``software.sync``).

    PYTHON sync_environment.py BUCKET KEY ROLE FOLDER

Standard library only, run by the Python that will run Dask. Reads ``envs/KEY/lock.json`` from the
environments bucket with the node's role, then: nothing missing from this Python -> nothing to do;
else the archive built for (KEY, this image's fingerprint) is fetched and unpacked into FOLDER/site;
else the missing pins are installed there with uv (``--target``, ``--no-deps``; local wheels from the
bucket) and, on the scheduler, the archive is uploaded for the next cluster, never replacing one
(``If-None-Match: *``). FOLDER/site goes first on PYTHONPATH (a target folder is relocatable; a venv
is not). Prints what it did and how long it took; never prints credentials.
"""

import datetime
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlparse

IMDS = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254/")
ECS_CREDENTIALS = "http://169.254.170.2"
PATIENCE = 60.0  # seconds a new role's permission may take to reach S3


class NoRole(Exception):
    """The node has no role to read the environment with, and will not get one by waiting."""


def say(text):
    print("dask-aws-magic: software: " + text, flush=True)


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _get(url, headers=None, method="GET", timeout=5):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return reply.read().decode()


def credentials():
    """The node's role credentials: the ECS task role's, else the EC2 instance role's; and the region."""
    e = os.environ
    if e.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or e.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        url = e.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or (
            ECS_CREDENTIALS + e["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"])
        token = e.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        creds = json.loads(_get(url, {"Authorization": token} if token else {}))
        return creds, e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION")
    if e.get("ECS_CONTAINER_METADATA_URI_V4"):  # an ECS task: never the instance's metadata service
        raise NoRole("the task has no task role (ECS gives no container credentials)")
    token = _get(IMDS + "latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}, "PUT")
    header = {"X-aws-ec2-metadata-token": token}
    region = _get(IMDS + "latest/meta-data/placement/region", header)
    role = _get(IMDS + "latest/meta-data/iam/security-credentials/", header).split("\n")[0].strip()
    if not role:
        raise LookupError("the instance has no role")
    return json.loads(_get(IMDS + "latest/meta-data/iam/security-credentials/" + role, header)), region


def _sha256(body):
    """The hex SHA-256 of bytes, or of the file at a path (read in blocks: archives are large)."""
    if not isinstance(body, str):
        return hashlib.sha256(body).hexdigest()
    digest = hashlib.sha256()
    with open(body, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class S3:
    """GET and conditional PUT of one bucket's objects, signed with Signature Version 4."""

    def __init__(self, bucket, region, creds):
        self.bucket, self.region, self.creds = bucket, region, creds
        custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if custom:  # path-style on a custom endpoint (the sandbox)
            self.base, self.prefix = custom.rstrip("/"), "/" + bucket
        else:
            self.base, self.prefix = f"https://{bucket}.s3.{region}.amazonaws.com", ""

    def request(self, method, key, body=b"", headers=None, stream=False):
        """One signed request; ``body`` is bytes or the path of a file to upload. With ``stream`` the open
        reply is returned (the caller reads and closes it), else its bytes."""
        path = quote(f"{self.prefix}/{key}", safe="/-_.~")
        url = self.base + path
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        signed_headers = {"host": urlparse(url).netloc, "x-amz-date": amz_date,
                          "x-amz-content-sha256": _sha256(body)}
        if self.creds.get("Token"):
            signed_headers["x-amz-security-token"] = self.creds["Token"]
        # The bucket must be its account's (named in it): never one of that name made by someone else.
        signed_headers["x-amz-expected-bucket-owner"] = self.bucket[len("dask-aws-magic-envs-"):].split("-", 1)[0]
        for name, value in (headers or {}).items():
            signed_headers[name.lower()] = value
        names = ";".join(sorted(signed_headers))
        canonical_request = "\n".join([method, path, "", "".join(f"{k}:{signed_headers[k]}\n" for k in sorted(
            signed_headers)), names, signed_headers["x-amz-content-sha256"]])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical_request.encode()).hexdigest()])
        key_ = _hmac(_hmac(_hmac(_hmac(("AWS4" + self.creds["SecretAccessKey"]).encode(), day), self.region), "s3"),
                     "aws4_request")
        signed_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.creds['AccessKeyId']}/{scope}, SignedHeaders={names}, "
            f"Signature={hmac.new(key_, to_sign.encode(), hashlib.sha256).hexdigest()}")
        data = None
        if method == "PUT":
            if isinstance(body, str):
                data = open(body, "rb")  # noqa: SIM115 - closed below, once sent
                signed_headers["content-length"] = str(os.path.getsize(body))
            else:
                data = body
        try:
            request = urllib.request.Request(url, data=data, headers=signed_headers, method=method)
            reply = urllib.request.urlopen(request, timeout=120)
        finally:
            if data is not None and not isinstance(data, bytes):
                data.close()
        if stream:
            return reply
        with reply:
            return reply.read()

    def get(self, key, stream=False):
        """The object's bytes (its open reply with ``stream``), or None when it does not exist (or this node
        may not read it)."""
        try:
            return self.request("GET", key, stream=stream)
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):
                return None
            raise

    def put_new(self, key, body):
        """Store ``body`` (bytes, or a file's path) unless the object exists: True if stored, False if another
        node was first."""
        try:
            self.request("PUT", key, body, {"If-None-Match": "*", "Content-Type": "application/octet-stream"})
        except urllib.error.HTTPError as exc:
            if exc.code in (409, 412):
                return False
            raise
        return True


def core_metadata(dist):
    """(Name, Version, Requires-Dist) of a distribution, read from its METADATA header lines: the
    email parser importlib.metadata uses costs ten times as much, and nodes read every distribution."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    fields, last = {"name": [], "version": [], "requires-dist": []}, None
    for line in text.splitlines():
        if not line:
            break  # the headers end at the first empty line (a line of spaces continues a folded one)
        if line[:1] in (" ", "\t") and last is not None:  # a folded header line continues the last one
            last[-1] += " " + line.strip()
            continue
        key, _, value = line.partition(":")
        last = fields.get(key.strip().lower())
        if last is not None:
            last.append(value.strip())
    name, version = fields["name"][:1], fields["version"][:1]
    return (name[0] if name else None), (version[0] if version else ""), fields["requires-dist"]


def installed():
    """name -> version of every distribution this Python sees, and those installed from a URL."""
    from importlib import metadata

    versions, urls = {}, {}
    for dist in metadata.distributions():
        name, version, _ = core_metadata(dist)
        if name and canonical(name) not in versions:
            versions[canonical(name)] = version
            text = dist.read_text("direct_url.json")
            if text:
                urls[canonical(name)] = text
    return versions, urls


def missing(lock, versions, urls):
    """What of the lock this Python lacks: requirement strings for uv, and the local wheels' files."""
    wanted = []
    for pin in lock["pins"]:
        name, version = pin.split("==", 1)
        if versions.get(canonical(name)) != version:
            wanted.append(pin)
    for ref in lock["direct"]:
        name, url = ref.split(" @ ", 1)
        commit = url.rsplit("@", 1)[-1]
        if commit not in urls.get(canonical(name), ""):
            wanted.append(ref)
    extras = []
    for spec in lock["pip"]:
        name, _, version = spec.partition("==")
        have = versions.get(canonical(name.strip()))
        if have is None or (version and have != version.strip()) or re.search(r"[<>!~\[@ ]", name):
            extras.append(spec)
    return wanted, extras, [w["file"] for w in lock["wheels"]]


def fingerprint(versions):
    """What this node's image already has: the archive built on one image fits the same image only."""
    text = json.dumps([sys.version, platform.machine(), sorted(versions.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def uv_command(folder):
    found = shutil.which("uv") or (os.path.join(folder, "tools", "bin", "uv")
                                   if os.path.exists(os.path.join(folder, "tools", "bin", "uv")) else None)
    if found:
        return found
    say("installing uv")
    tools = os.path.join(folder, "tools")
    subprocess.check_call([sys.executable, "-m", "venv", tools])
    subprocess.check_call([os.path.join(tools, "bin", "python"), "-m", "pip", "install", "-q", "uv"])
    return os.path.join(tools, "bin", "uv")


def install(s3, key, site, folder, wanted, extras, wheels):
    local = []
    if wheels:
        os.makedirs(os.path.join(folder, "wheels"), exist_ok=True)
    for file in wheels:
        data = s3.get(f"envs/{key}/wheels/{file}")
        if data is None:
            raise LookupError(f"the local wheel {file} is not in the bucket")
        path = os.path.join(folder, "wheels", file)
        with open(path, "wb") as out:
            out.write(data)
        local.append(path)
    uv = uv_command(folder)
    base = [uv, "pip", "install", "--quiet", "--target", site, "--python", sys.executable]
    if wanted or local:
        subprocess.check_call([*base, "--no-deps", *wanted, *local])
    if extras:
        subprocess.check_call([*base, *extras])


def pack(site, path):
    """The installed folder as a tar file at ``path`` (not compressed: unpacking it on every node costs
    only the writes, where gunzip would cost each node seconds of CPU); its size."""
    tar = shutil.which("tar")
    if tar and subprocess.call([tar, "-C", site, "-cf", path, "."]) == 0:
        return os.path.getsize(path)
    with tarfile.open(path, "w") as archive:
        for entry in sorted(os.listdir(site)):
            archive.add(os.path.join(site, entry), arcname=entry)
    return os.path.getsize(path)


class _Counted:
    def __init__(self, stream):
        self.stream, self.count = stream, 0

    def read(self, size=-1):
        data = self.stream.read(size)
        self.count += len(data)
        return data


def unpack(reply, site):
    """Extract an archive while it downloads into ``site`` (no member may land outside it); its size."""
    os.makedirs(site, exist_ok=True)
    source = _Counted(reply)
    tar = shutil.which("tar")
    if tar:  # GNU tar drops leading "/" and refuses ".." members by itself
        process = subprocess.Popen([tar, "-xf", "-", "-C", site, "--no-same-owner"], stdin=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        try:
            shutil.copyfileobj(source, process.stdin, 1 << 20)
            process.stdin.close()
        except BrokenPipeError:
            pass
        error = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            raise ValueError(error[-300:] or "tar failed")
        return source.count
    with tarfile.open(fileobj=source, mode="r|") as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(site, filter="data")
        else:
            for member in archive:
                target = os.path.realpath(os.path.join(site, member.name))
                if not target.startswith(os.path.realpath(site) + os.sep) or member.issym() or member.islnk():
                    raise ValueError(f"unsafe archive member {member.name}")
                archive.extract(member, site)
    return source.count


def main(bucket, key, role, folder):
    started = time.monotonic()
    site = os.path.join(folder, "site")
    deadline = started + PATIENCE
    lock, why = None, "it is not there, or this node's role may not read it"
    while True:
        try:
            creds, region = credentials()
            s3 = S3(bucket, region, creds)
            lock = s3.get(f"envs/{key}/lock.json")
        except (OSError, LookupError, ValueError, NoRole) as exc:  # no role yet, or IAM not yet consistent
            why = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, NoRole):
                break
        if lock is not None or time.monotonic() > deadline:
            break
        time.sleep(2)  # a new role's permission not yet everywhere
    if lock is None:
        say(f"cannot read the environment {key} in the bucket {bucket} ({why})")
        return 1
    lock = json.loads(lock)
    versions, urls = installed()
    wanted, extras, wheels = missing(lock, versions, urls)
    if not (wanted or extras or wheels):
        say(f"the image has all {len(lock['pins'])} packages; nothing to install "
            f"({time.monotonic() - started:.1f} s)")
        return 0
    archive_key = f"envs/{key}/archives/{fingerprint(versions)}.tar"
    compared = time.monotonic() - started
    reply = s3.get(archive_key, stream=True)
    if reply is not None:
        try:
            with reply:
                size = unpack(reply, site)
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            say(f"the environment archive is unreadable ({exc}); installing instead")
            shutil.rmtree(site, ignore_errors=True)
        else:
            say(f"fetched the environment archive ({size / 2**20:.1f} MB) for {len(wanted) + len(wheels)} "
                f"missing package(s) in {time.monotonic() - started:.1f} s (lock read and compared in "
                f"{compared:.1f} s)")
            return 0
    say(f"installing {len(wanted)} missing package(s), {len(wheels)} local wheel(s)"
        + (f" and {len(extras)} from software.pip" if extras else ""))
    try:
        install(s3, key, site, folder, wanted, extras, wheels)
    except (OSError, LookupError, subprocess.CalledProcessError) as exc:
        say(f"installing failed: {exc}")
        return 1
    say(f"installed in {time.monotonic() - started:.1f} s")
    if role == "scheduler":
        path = os.path.join(folder, "archive.tar")
        try:
            size = pack(site, path)
            stored = s3.put_new(archive_key, path)
        except (OSError, tarfile.TarError) as exc:  # the cluster runs all the same; the next one installs again
            say(f"uploading the environment archive failed: {exc}")
            return 0
        finally:
            if os.path.exists(path):
                os.unlink(path)
        say(f"uploaded the environment archive ({size / 2**20:.1f} MB) for the next cluster" if stored
            else "another node uploaded the environment archive first")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
