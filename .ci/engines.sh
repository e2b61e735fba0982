#!/usr/bin/env bash
# CI for the distributed engines (docs/engines.md): fetch or build what tests/engines/ needs, then run them.
#
#     .ci/engines.sh                    # everything: Flink and Spark job servers, Prism, then `pytest -m engine`
#     .ci/engines.sh --fetch-only       # only fetch and build (the cache), no tests
#
# The cache is $NEWSBEAM_ENGINES (default ~/.cache/newsbeam-engines): Maven's repository, the job servers and the
# Prism binary. A second run on the same machine downloads nothing. Maven Central and the Go module proxy only.
#
# Maven Central serves neither Beam's shaded job-server jars (beam-runners-flink-*-job-server,
# beam-runners-spark-3-job-server) nor the runner libraries of Beam 2.78 (the newest Beam Java release there is
# 2.76.0, and its runner modules are missing). Beam 2.62.0 is the newest release whose Flink and Spark runner
# closure resolves, so the job servers are assembled from it: Maven resolves the runner and its dependencies into
# lib/, and a small jar whose manifest names them (Class-Path) and the job server's main class makes
# `java -jar` work, which is all the Python SDK's --flink_job_server_jar / --spark_job_server_jar need.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${NEWSBEAM_ENGINES:-$HOME/.cache/newsbeam-engines}"
BEAM_JAVA=2.62.0   # the job servers' Beam release (see above)
FLINK=1.19           # the newest Flink that Beam 2.62 has a runner for
SPARK_VERSION=3.5.0  # the runner is compiled against Spark 3.2.2 (its pom: provided); 3.5 runs on Java 17
# The project's venv (as .ci/run makes it), for the tests and for the apache-beam version Prism must match.
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'; fi
  . .venv/bin/activate
fi
BEAM_PYTHON="$(python -c 'import apache_beam; print(apache_beam.__version__)')"
MVN=(mvn -q -B "-Dmaven.repo.local=$CACHE/m2")
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

# job_server NAME MAIN_CLASS DEPENDENCY... : $CACHE/NAME/job-server.jar, a manifest-only jar over $CACHE/NAME/lib/.
job_server() {
  local name=$1 main=$2 dir="$CACHE/$1"
  shift 2
  if [ -f "$dir/job-server.jar" ]; then return; fi
  mkdir -p "$dir"
  {
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
    echo "<groupId>newsbeam</groupId><artifactId>$name</artifactId><version>1</version><dependencies>"
    for coordinate in "$@"; do
      IFS=: read -r group artifact version <<<"$coordinate"
      echo "<dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version></dependency>"
    done
    echo '</dependencies></project>'
  } >"$dir/pom.xml"
  rm -rf "$dir/lib"
  "${MVN[@]}" -f "$dir/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" -DoutputDirectory="$dir/lib" -DincludeScope=runtime
  # A manifest's lines are at most 72 bytes; longer values continue on lines that start with a space.
  python3 - "$dir" "$main" <<'PY'
import os, sys
directory, main = sys.argv[1:]
entries = {
    "Manifest-Version": "1.0",
    "Main-Class": main,
    # Spark 3.5 on Java 17 needs these packages opened (spark-submit adds the same options).
    "Add-Opens": "java.base/java.lang java.base/java.lang.invoke java.base/java.io java.base/java.net "
    "java.base/java.nio java.base/java.util java.base/java.util.concurrent java.base/sun.nio.ch "
    "java.base/sun.nio.cs java.base/sun.security.action java.base/sun.util.calendar",
    "Class-Path": " ".join("lib/" + name for name in sorted(os.listdir(os.path.join(directory, "lib")))),
}
lines = []
for key, value in entries.items():
    text = f"{key}: {value}"
    lines.append(text[:70])
    lines.extend(" " + text[i : i + 69] for i in range(70, len(text), 69))
with open(os.path.join(directory, "MANIFEST.MF"), "w") as handle:
    handle.write("\n".join(lines) + "\n")
PY
  (cd "$dir" && jar cfm job-server.jar.tmp MANIFEST.MF && mv job-server.jar.tmp job-server.jar)
}

start=$SECONDS
job_server "flink-$FLINK-$BEAM_JAVA" org.apache.beam.runners.flink.FlinkJobServerDriver \
  "org.apache.beam:beam-runners-flink-$FLINK:$BEAM_JAVA" org.slf4j:slf4j-simple:1.7.30
job_server "spark-3-$BEAM_JAVA" org.apache.beam.runners.spark.SparkJobServerDriver \
  "org.apache.beam:beam-runners-spark-3:$BEAM_JAVA" "org.apache.spark:spark-core_2.12:$SPARK_VERSION" \
  "org.apache.spark:spark-streaming_2.12:$SPARK_VERSION" org.slf4j:slf4j-simple:1.7.30
# Prism at the version of the installed apache-beam, built from Beam's Go module (the Go module proxy).
if [ ! -x "$CACHE/prism-v$BEAM_PYTHON/prism" ]; then
  GOBIN="$CACHE/prism-v$BEAM_PYTHON" GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild" GOFLAGS=-mod=mod \
    go install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$BEAM_PYTHON"
fi
echo "engines: fetched and built in $((SECONDS - start)) s (cache $CACHE)" >&2
if [ "${1:-}" = "--fetch-only" ]; then exit 0; fi

export NEWSBEAM_FLINK_JOB_SERVER_JAR="$CACHE/flink-$FLINK-$BEAM_JAVA/job-server.jar"
export NEWSBEAM_SPARK_JOB_SERVER_JAR="$CACHE/spark-3-$BEAM_JAVA/job-server.jar"
export NEWSBEAM_PRISM="$CACHE/prism-v$BEAM_PYTHON/prism"
pytest -m engine tests/engines
