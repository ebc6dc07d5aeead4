#!/bin/sh
# Assemble Apache JMeter 5.6.3 and the WebSocket samplers plugin 1.3.1 from their Maven jars
# into a cache dir (default ~/.cache/edgeim/jmeter-5.6.3), laid out as JMeter's own
# distribution is: bin/ApacheJMeter.jar (the launcher), bin/*.properties and the report
# template (out of ApacheJMeter_config), lib/ext/ (JMeter's components and the plugin), lib/
# (their dependencies). Prints that directory. Needs java, mvn (`make system-packages`) and python3.
# The first run downloads ~60 MB through Maven's configured repositories (~40 s); later runs
# find the `.complete` marker and return at once. Debian's jmeter package (2.13) is too old.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=5.6.3
dest=${EDGEIM_JMETER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeim/jmeter-$version}
if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi
command -v mvn >/dev/null 2>&1 || { echo "mvn is not installed: apt-get install -y maven" >&2; exit 1; }
command -v java >/dev/null 2>&1 || { echo "java is not installed: apt-get install -y default-jre-headless" >&2; exit 1; }
echo "assembling JMeter $version into $dest" >&2
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/jars" "$dest.tmp/home/bin" "$dest.tmp/home/lib/ext"
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$dest.tmp/jars" -DincludeScope=runtime -Dmaven.repo.local="$dest.tmp/m2" >&2
home="$dest.tmp/home"
# bin/: the properties files, log4j2.xml and the HTML report template live in the config jar
python3 - "$dest.tmp/jars/ApacheJMeter_config-$version.jar" "$home" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as jar:
    jar.extractall(sys.argv[2], [n for n in jar.namelist() if n.startswith("bin/")])
PY
for jar in "$dest.tmp"/jars/*.jar; do
  name=$(basename "$jar")
  case "$name" in
    ApacheJMeter-$version.jar) cp "$jar" "$home/bin/ApacheJMeter.jar" ;;
    ApacheJMeter_*|jmeter-websocket-samplers-*) cp "$jar" "$home/lib/ext/" ;;
    *) cp "$jar" "$home/lib/" ;;
  esac
done
rm -rf "$dest"
mv "$home" "$dest"
rm -rf "$dest.tmp"
touch "$dest/.complete"
echo "$dest"
