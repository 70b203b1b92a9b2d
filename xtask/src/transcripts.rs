//! Transcripts: the book's longer sessions (a registry and `step10`, a
//! daemon and its clients), run for real by `cargo xtask outputs`.
//!
//! A session is a list of parts; each part is a list of shell commands that
//! the chapter shows as `# command` followed by what it printed, and
//! includes as `outputs/<part>.txt`. Every command of a session runs in
//! one `bash`, one after another, so a variable or a `cd` carries on as it
//! does in the reader's shell. The shell runs in a mount, network and PID
//! namespace of its own (`unshare`): `/tmp` and `/run` are fresh tmpfs
//! mounts there, so the chapter's paths (`/tmp/reg`, `/tmp/eng`) are the
//! real ones and nothing is left on the machine; loopback is the
//! namespace's own, so a registry on `127.0.0.1:5000` is nobody else's.
//! (Not a PID namespace: the shell there would be pid 1, and the story of
//! a shim adopted by the host's init could not be told.) On its way out,
//! whatever happened, the shell removes every container through the
//! daemon and ends its jobs (registries, daemon).
//! Commands that only wait (for a daemon to listen) are hidden: they are
//! not something a reader types.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A command of a part: shown with its output, or run quietly.
pub enum Line {
    /// Shown as `# command`, then its stdout and stderr.
    Show(&'static str),
    /// Run, not shown; a failure stops the session.
    Hide(&'static str),
}
use Line::{Hide, Show};

/// One block of a chapter: the file it is written to and its commands.
pub struct Part {
    pub file: &'static str,
    pub lines: &'static [Line],
}

/// Step 9's "Two images, a whiteout, and what changed", and the layout
/// of its second image taken apart.
pub const STEP9: &[Part] = &[
    Part {
        file: "step9-make",
        lines: &[
            Show("REPO=$PWD"),
            Show("mkdir -m 0755 /tmp/img && cd /tmp/img"),
            Show("umoci init --layout busybox"),
            Show("umoci new --image busybox:latest"),
            Show("umoci unpack --image busybox:latest bundle"),
            Show("cp -a /var/cache/caixa/busybox-rootfs/. bundle/rootfs/"),
            Show("umoci repack --image busybox:latest bundle"),
            Show(
                "umoci config --image busybox:latest --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin --config.cmd /bin/sh",
            ),
            Show("cp -a busybox app"),
            Show("umoci unpack --image app:latest app-bundle"),
            Show("cd app-bundle/rootfs"),
            Show(
                "echo web:x:1000:1000:web:/srv:/bin/sh >> etc/passwd; echo web:x:1000: >> etc/group",
            ),
            Show(
                "mkdir srv && echo hello from the second layer > srv/index.html && chown -R 1000:1000 srv",
            ),
            Show("rm linuxrc"),
            Show("cd /tmp/img"),
            Show("umoci repack --image app:latest app-bundle"),
            Show(
                "umoci config --image app:latest --config.user web --config.workingdir /srv --config.env GREETING=hello --config.cmd sh --config.cmd -c --config.cmd 'echo $GREETING from $(pwd) as $(id -un); cat index.html'",
            ),
        ],
    },
    Part {
        file: "step9-layout",
        lines: &[
            Show("cat app/oci-layout; echo"),
            Show("jq . app/index.json"),
            Show(
                "M=$(jq -r '.manifests[0].digest' app/index.json | cut -d: -f2); jq . app/blobs/sha256/$M",
            ),
            Show(
                "C=$(jq -r .config.digest app/blobs/sha256/$M | cut -d: -f2); L=$(jq -r '.layers[1].digest' app/blobs/sha256/$M | cut -d: -f2)",
            ),
            Show("jq .config,.rootfs app/blobs/sha256/$C"),
            Show("sha256sum app/blobs/sha256/$L"),
            Show("zcat app/blobs/sha256/$L | sha256sum"),
            Show("tar tvzf app/blobs/sha256/$L"),
            Show("TOP=$(jq -r '.rootfs.diff_ids[1]' app/blobs/sha256/$C | cut -d: -f2)"),
        ],
    },
    Part {
        file: "step9-two",
        lines: &[
            Show("mkdir -m 0755 store state"),
            Show("ip netns add lab"),
            Show(
                "step9() { nsenter --net=/run/netns/lab env CAIXA_STATE_DIR=/tmp/img/state $REPO/target/debug/step9 --root /tmp/img/store \"$@\"; }",
            ),
            Show("step9 load busybox --name busybox"),
            Show("step9 load app --name app"),
            Show("step9 images"),
            Show("step9 run -v busybox true 2>&1 | grep -E 'image:|overlay'"),
            Show("step9 run -v app true 2>&1 | grep -E 'image:|overlay'"),
            Show("step9 run app"),
            Show("step9 run busybox ls /"),
            Show("step9 run app ls /"),
            Show("ls store store/layers/100000-100000"),
            Show("ls -l store/layers/100000-100000/l"),
            Show("ls -ln store/layers/100000-100000/$TOP"),
            Show(
                "step9 run --keep busybox sh -c 'echo hi > /tmp/new; rm /bin/ls; echo changed > /etc/passwd'",
            ),
            Show("find store/containers -path \"*/upper/*\" -ls"),
            Show("ip netns del lab; cd /; rm -rf /tmp/img"),
        ],
    },
];

/// Step 10's "Run it": a registry of your own, pull, run, push, a registry
/// with a password.
pub const STEP10: &[Part] = &[
    Part {
        file: "step10-registry",
        lines: &[
            Show("REPO=$PWD"),
            Show("mkdir -m 0755 /tmp/reg && cd /tmp/reg"),
            Show(
                r"printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: /tmp/reg/data\nhttp:\n  addr: 127.0.0.1:5000\n' > open.yml",
            ),
            Show("docker-registry serve open.yml > open.log 2>&1 &"),
            Hide(WAIT_5000),
        ],
    },
    Part {
        file: "step10-image",
        lines: &[
            Show("umoci init --layout busybox && umoci new --image busybox:latest"),
            Show(
                "umoci unpack --image busybox:latest bundle && cp -a /var/cache/caixa/busybox-rootfs/. bundle/rootfs/",
            ),
            Show("umoci repack --image busybox:latest bundle"),
            Show(
                "umoci config --image busybox:latest --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin --config.cmd /bin/sh",
            ),
            Show(
                "skopeo copy --dest-tls-verify=false oci:busybox:latest docker://127.0.0.1:5000/team/app:1",
            ),
            Show("curl -s http://127.0.0.1:5000/v2/_catalog"),
        ],
    },
    Part {
        file: "step10-pull",
        lines: &[
            Show("mkdir -m 0755 store state config"),
            Show(
                "step10() { env CAIXA_CONFIG_DIR=/tmp/reg/config $REPO/target/debug/step10 --root /tmp/reg/store \"$@\"; }",
            ),
            Show("step10 pull 127.0.0.1:5000/team/app:1"),
            Show("step10 pull 127.0.0.1:5000/team/app:1"),
            Show("step10 images"),
        ],
    },
    Part {
        file: "step10-run",
        lines: &[
            Show("ip netns add lab"),
            Show(
                "nsenter --net=/run/netns/lab env CAIXA_STATE_DIR=/tmp/reg/state $REPO/target/debug/step10 --root /tmp/reg/store run 127.0.0.1:5000/team/app:1 ls /",
            ),
        ],
    },
    Part {
        file: "step10-push",
        lines: &[
            Show("step10 push 127.0.0.1:5000/team/app:1 --to 127.0.0.1:5000/team/copy:2"),
            Show(
                "cmp <(skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/team/app:1) <(skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/team/copy:2) && echo identical",
            ),
        ],
    },
    Part {
        file: "step10-upload",
        lines: &[
            Show("sed -e 's/5000/5002/' -e 's/data$/data-2/' open.yml > second.yml"),
            Show("docker-registry serve second.yml > second.log 2>&1 &"),
            Hide(WAIT_5002),
            Show(
                "step10 push 127.0.0.1:5000/team/app:1 --to 127.0.0.1:5002/team/app:1 --chunk-size 64k",
            ),
        ],
    },
    Part {
        file: "step10-login",
        lines: &[
            Show("htpasswd -Bbn caixa s3cret > htpasswd"),
            Show(
                r"printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: /tmp/reg/data-auth\nhttp:\n  addr: 127.0.0.1:5001\nauth:\n  htpasswd:\n    realm: caixa\n    path: /tmp/reg/htpasswd\n' > auth.yml",
            ),
            Show("docker-registry serve auth.yml > auth.log 2>&1 &"),
            Hide(WAIT_5001),
            Show(
                "skopeo copy --dest-tls-verify=false --dest-creds caixa:s3cret oci:busybox:latest docker://127.0.0.1:5001/team/app:1",
            ),
            Show("step10 pull 127.0.0.1:5001/team/app:1; echo \"exit code $?\""),
            Show("echo s3cret | step10 login 127.0.0.1:5001 -u caixa"),
            Show("cat config/config.json"),
            Show("step10 pull 127.0.0.1:5001/team/app:1"),
            Hide("kill %1 %2 %3; wait; ip netns del lab"),
        ],
    },
];

const WAIT_5000: &str = "for i in $(seq 100); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done";
const WAIT_5001: &str = "for i in $(seq 100); do curl -s http://127.0.0.1:5001/v2/ >/dev/null && break; sleep 0.1; done";
const WAIT_5002: &str = "for i in $(seq 100); do curl -sf http://127.0.0.1:5002/v2/ >/dev/null && break; sleep 0.1; done";

/// Step 11's "Run it": a daemon, its clients, a daemon killed and started
/// again under a running container.
pub const STEP11: &[Part] = &[
    Part {
        file: "step11-setup",
        lines: &[
            Show("mkdir -m 0755 /tmp/eng && cp target/debug/step11 /tmp/eng/ && cd /tmp/eng"),
            Show(
                "mkdir -p rootfs/bin rootfs/proc rootfs/dev rootfs/sys && install -d -m 1777 rootfs/tmp",
            ),
            Show(
                "cp /bin/busybox rootfs/bin/ && for a in $(rootfs/bin/busybox --list); do [ \"$a\" = busybox ] || ln -s busybox rootfs/bin/$a; done",
            ),
            Show("umoci init --layout busybox && umoci new --image busybox:latest"),
            Show(
                "umoci unpack --image busybox:latest bundle >/dev/null && cp -a rootfs/. bundle/rootfs/",
            ),
            Show("umoci repack --image busybox:latest bundle"),
            Show(
                "umoci config --image busybox:latest --config.env PATH=/bin --config.cmd /bin/sh --config.cmd -c --config.cmd 'echo hello from $(hostname)'",
            ),
            Show("skopeo copy --quiet oci:busybox:latest docker-archive:busybox.tar:busybox:1"),
            Show("mkdir -m 0755 root state"),
            Show("ip netns add lab && ip -n lab link set lo up"),
            Show("export PATH=$PWD:$PATH"),
            Show(
                "nsenter --net=/run/netns/lab env CAIXA_STATE_DIR=$PWD/state step11 --root $PWD/root daemon --socket $PWD/caixa.sock 2>daemon.log &",
            ),
            Hide(WAIT_DAEMON),
            Show("DAEMON=$!"),
            Show("cat daemon.log"),
            Show("stat -c '%A %U %G %n' caixa.sock"),
        ],
    },
    Part {
        file: "step11-first",
        lines: &[
            Show("export CAIXA_HOST=unix://$PWD/caixa.sock"),
            Show("step11 version"),
            Show("step11 load busybox.tar"),
            Show("step11 images"),
            Show("step11 run busybox:1"),
            Show(
                "step11 run --rm --name short -e WHO=caixa busybox:1 sh -c 'echo out $WHO; echo err >&2; exit 7'; echo \"exit code $?\"",
            ),
            Show("step11 ps -a"),
        ],
    },
    Part {
        file: "step11-live",
        lines: &[Show(
            "step11 run --rm busybox:1 sh -c 'for i in 1 2 3; do echo tick $i; sleep 1; done' | while read -r line; do echo \"$(date +%T.%1N) $line\"; done",
        )],
    },
    Part {
        file: "step11-brief",
        lines: &[
            Show("step11 run -d --rm --name brief busybox:1 sh -c 'sleep 2; exit 4'"),
            Show("step11 wait brief"),
            // `wait` answers once `brief` has exited; its shim removes it a
            // moment later. What follows shows it gone, so wait for that.
            Hide(
                "curl -s -o /dev/null --unix-socket caixa.sock -X POST 'http://caixa/v1.41/containers/brief/wait?condition=removed'",
            ),
            Show("step11 ps -a"),
            Show("ls root/containers"),
            Show("step11 logs brief"),
        ],
    },
    Part {
        file: "step11-ticker",
        lines: &[
            Show(
                "step11 run -d --name ticker busybox:1 sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done'",
            ),
            Hide("sleep 2"),
            Show("step11 ps"),
            Show(
                "ID=$(step11 ps | awk '$NF == \"ticker\" {print $1}'); D=$(echo root/containers/$ID*)",
            ),
            Show("ls $D"),
            Show("cat $D/state.json"),
            Show("cat $D/config.json | head -n 12"),
            Show("jq -c '.process.args, .root, .linux.namespaces' $D/config.json"),
            Show("stat -c '%A %U %G' $D/shim.sock"),
            Show("grep -m 1 caixa /proc/$(jq .pid $D/state.json)/cgroup"),
        ],
    },
    Part {
        file: "step11-parents",
        lines: &[
            // By pid, not by session: the ticker's `sleep 1` comes and goes.
            Show("SHIM=$(jq .shim $D/state.json); PID=$(jq .pid $D/state.json)"),
            Show("ps -o pid,ppid,sid,args --forest -p \"$DAEMON $SHIM $PID\" --ppid $DAEMON"),
            Show("readlink /proc/$DAEMON/cwd /proc/$SHIM/cwd"),
            Show("tail -n 2 $D/container.log"),
        ],
    },
    Part {
        file: "step11-orphan",
        lines: &[
            Show("kill -KILL $DAEMON"),
            Hide("wait $DAEMON 2>/dev/null; true"),
            Show("step11 ps"),
            Show("ps -o pid,ppid,sid,args --forest -p \"$SHIM $PID\""),
        ],
    },
    Part {
        file: "step11-again",
        lines: &[
            Show(
                "nsenter --net=/run/netns/lab env CAIXA_STATE_DIR=$PWD/state step11 --root $PWD/root daemon --socket $PWD/caixa.sock 2>daemon2.log &",
            ),
            Hide(WAIT_DAEMON),
            Show("DAEMON=$!"),
            Show("step11 ps"),
            Show("step11 logs ticker | tail -n 2"),
        ],
    },
    Part {
        file: "step11-end",
        lines: &[
            Show("step11 rm ticker"),
            Show("step11 run --name ticker busybox:1 true"),
            Show(
                "curl -si --unix-socket caixa.sock -X POST 'http://caixa/v1.41/containers/ticker/kill?signal=TERM' | head -n 1",
            ),
            Hide("sleep 1"),
            Show("step11 ps"),
            Show("step11 stop -t 1 ticker"),
            Show("step11 wait ticker"),
            Show("cat $D/state.json"),
            Show("cat $D/shim.log"),
            Show("step11 rm ticker && step11 ps -a"),
            Show("step11 logs ticker"),
            Show("step11 run --network none -p 8080:80 busybox:1"),
            Show("step11 -H unix:///tmp/nowhere.sock ps"),
        ],
    },
    Part {
        file: "step11-shim",
        lines: &[
            Show("step11 run -d --name victim busybox:1 sleep 600"),
            Show("V=$(echo root/containers/$(step11 ps | awk '$NF == \"victim\" {print $1}')*)"),
            Show("jq -c '{status, pid, shim}' $V/state.json"),
            Show("ls state/running"),
            Show("P=$(jq .pid $V/state.json); kill -KILL $(jq .shim $V/state.json)"),
            Show(
                "while ps -o stat= -p $P | grep -qv Z; do sleep 0.1; done; echo \"pid $P: not running\"",
            ),
            Show("step11 ps -a"),
            Show(
                "curl -s --unix-socket caixa.sock http://caixa/v1.41/containers/victim/json | jq -c '.State | {Status, ExitCode, Error}'",
            ),
            Show("step11 rm victim"),
            // The launcher's sweep may still be printing: its last line.
            Hide(
                "for i in $(seq 100); do grep -q 'took back' daemon2.log && break; sleep 0.05; done",
            ),
            Show("cut -c 1-110 daemon2.log"),
        ],
    },
    Part {
        file: "step11-api",
        lines: &[
            Show(
                r#"curl -s --unix-socket caixa.sock -X POST -H "Content-Type: application/json" -d '{"Image":"busybox:1","Cmd":["sh","-c","echo out; echo err >&2; exit 3"]}' "http://caixa/v1.41/containers/create?name=raw""#,
            ),
            Show(
                "curl -si --unix-socket caixa.sock -X POST http://caixa/v1.41/containers/raw/start | grep -v '^date:'",
            ),
            Show("curl -s --unix-socket caixa.sock -X POST http://caixa/v1.41/containers/raw/wait"),
            Show(
                r#"curl -s --unix-socket caixa.sock "http://caixa/v1.41/containers/raw/logs?stdout=1&stderr=1" | od -A d -t x1 -c"#,
            ),
            Show(
                r#"curl -s --unix-socket caixa.sock -X POST -d '{"Image":"busybox:1","HostConfig":{"NetworkMode":"host"}}' http://caixa/v1.41/containers/create"#,
            ),
            Show("curl -s --unix-socket caixa.sock http://caixa/v1.41/volumes"),
            Show(
                r#"curl -s -w '%{http_code}\n' --unix-socket caixa.sock -X POST -d '{"Name":"../x"}' http://caixa/v1.41/volumes/create"#,
            ),
            Show(
                r"curl -s -w '%{http_code}\n' --unix-socket caixa.sock -X POST http://caixa/v1.41/containers/raw/kill",
            ),
            Show(
                r"curl -s -w '%{http_code}\n' --unix-socket caixa.sock -X DELETE http://caixa/v1.41/containers/raw",
            ),
        ],
    },
    Part {
        file: "step11-attach",
        lines: &[
            Show(
                r#"curl -s --unix-socket caixa.sock -X POST -H 'Content-Type: application/json' -d '{"Image":"busybox:1","Cmd":["sh","-c","sleep 1; echo one; echo oops >&2; sleep 3; echo two"]}' 'http://caixa/v1.41/containers/create?name=slow'"#,
            ),
            Show(
                "curl -si -N --unix-socket caixa.sock -X POST -H 'Connection: Upgrade' -H 'Upgrade: tcp' 'http://caixa/v1.41/containers/slow/attach?stream=1&stdout=1&stderr=1' >attach.out &",
            ),
            // Attached before the start: wait for its `101`.
            Hide("for i in $(seq 100); do grep -q ' 101 ' attach.out && break; sleep 0.05; done"),
            Show(
                "curl -s --unix-socket caixa.sock -X POST http://caixa/v1.41/containers/slow/start",
            ),
            Show(
                r"curl -s -o /dev/null -w '%{http_code}\n' --unix-socket caixa.sock -X POST http://caixa/v1.41/containers/slow/start",
            ),
            Show(
                "curl -si --max-time 1 --unix-socket caixa.sock -X POST http://caixa/v1.41/containers/slow/wait | grep -v '^date:'; echo \"curl: ${PIPESTATUS[0]}\"",
            ),
            Show(
                "curl -s --unix-socket caixa.sock -X POST http://caixa/v1.41/containers/slow/wait",
            ),
            Hide("wait %?attach; true"),
            Show("sed '/^date:/d' attach.out | cat -v"),
            Show(
                r#"curl -s --unix-socket caixa.sock "http://caixa/v1.41/containers/slow/logs?stdout=1&stderr=1&timestamps=1" | cat -v"#,
            ),
            Show("curl -s --unix-socket caixa.sock -X DELETE http://caixa/v1.41/containers/slow"),
        ],
    },
    Part {
        file: "step11-docker",
        lines: &[
            Show(r#"docker() { /opt/caixa-peers/docker -H unix://$PWD/caixa.sock "$@"; }"#),
            Show("docker version --format '{{.Server.APIVersion}}'"),
            Show("docker load -i busybox.tar"),
            Show("docker images"),
            Show(
                "docker run --rm busybox:1 sh -c 'echo via docker; echo to stderr >&2; exit 6'; echo \"exit code $?\"",
            ),
            Show("docker run -d --name bg busybox:1 sleep 60"),
            Hide("sleep 2"),
            Show("docker ps"),
            Show("docker kill -s USR1 bg"),
            Show("docker inspect -f '{{.State.Status}} {{.State.Pid}} {{.State.StartedAt}}' bg"),
            Show("docker stop -t 1 bg"),
            Show(
                "docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}} {{.State.FinishedAt}}' bg",
            ),
            Show("docker rm bg"),
            Show(
                "docker run --name hog --memory 16m busybox:1 tail /dev/zero; echo \"exit code $?\"",
            ),
            Show("docker inspect -f '{{.State.ExitCode}} OOMKilled={{.State.OOMKilled}}' hog"),
            Show("docker rm hog"),
            Show("docker create --name nocmd busybox:1 no-such-command"),
            Show("docker start nocmd; echo exit $?"),
            Show("docker rm nocmd"),
            Show("docker volume create site"),
            Show(
                r#"docker run --rm -v site:/www busybox:1 sh -c 'echo "<h1>caixa</h1>" > /www/index.html'"#,
            ),
            Show(
                "docker run --rm -v site:/www:ro busybox:1 sh -c 'cat /www/index.html; echo x > /www/y'",
            ),
            Show("docker volume ls"),
            Show("docker run -d --name web -v site:/www busybox:1 sleep 600"),
            Show("docker volume rm site"),
            Show(
                "docker exec web sh -c 'cat /www/index.html; id -u; readlink /proc/self/ns/pid; readlink /proc/1/ns/pid'",
            ),
            Show("docker exec web sh -c 'exit 3'; echo \"exit code $?\""),
            Show("docker rm -f web"),
            Show("docker volume rm site"),
        ],
    },
    Part {
        file: "step11-top",
        lines: &[
            Show("docker run -d --name m --memory 32m -p 8080:80 busybox:1 sleep 3600"),
            Show("docker top m"),
            Show(
                r"docker stats --no-stream --format 'table {{.Name}}\t{{.MemUsage}}\t{{.PIDs}}' m",
            ),
            Show("docker port m"),
            Show("docker rm -f m"),
        ],
    },
    Part {
        file: "step11-readonly",
        lines: &[Show(
            "step11 run --rm --read-only --tmpfs /run:size=8m --init busybox:1 sh -c 'touch /x; echo hi > /run/x && cat /run/x; ps -o pid,comm'",
        )],
    },
    Part {
        file: "step11-strace",
        lines: &[Show(
            r#"strace -f -e trace=write -s 200 /opt/caixa-peers/docker -H unix://$PWD/caixa.sock run --rm busybox:1 true 2>&1 | grep -oE '"(GET|POST|HEAD|DELETE) [^ ]*'"#,
        )],
    },
    Part {
        file: "step11-build",
        lines: &[
            Show("mkdir web && cd web"),
            Show("mkdir site && echo '<h1>caixa</h1>' > site/index.html"),
            Show(r"printf '#!/bin/sh\nexec httpd -f -p 80 -h /srv/www\n' > start.sh"),
            Show(
                r#"printf 'FROM busybox:1\nRUN mkdir -p /srv/www\nCOPY site/ /srv/www/\nCOPY start.sh /start.sh\nEXPOSE 80\nCMD ["/bin/sh","/start.sh"]\n' > Dockerfile"#,
            ),
            Show("step11 build -t web:1 ."),
            Show("step11 build -t web:1 .   # again: nothing changed"),
            Show("echo '<h1>caixa, again</h1>' > site/index.html"),
            Show("step11 build -t web:1 ."),
            Show("cd .."),
            Show("step11 run --name c busybox:1 sh -c 'echo hi > /note && rm /bin/tail'"),
            Show("step11 commit c noted:1"),
            Show("step11 run --rm noted:1 sh -c 'cat /note; ls /bin/tail'"),
        ],
    },
    Part {
        file: "step11-input",
        lines: &[
            Show("echo 'hello from the host' | step11 run -i --rm busybox:1 sh -c 'cat; echo end'"),
            Show("step11 run -d -i --name reader busybox:1 sh -c 'cat; echo \"stdin ended\"'"),
            Show(
                "curl -s --unix-socket caixa.sock http://caixa/v1.41/containers/reader/json | jq -c '.Config | {OpenStdin, StdinOnce, Tty}'",
            ),
            Show("echo 'typed into attach' | step11 attach reader; echo \"attach exit $?\""),
            Show("step11 run -d -t --name term busybox:1 sleep 600"),
            Show(
                r"curl -s -w '%{http_code}\n' --unix-socket caixa.sock -X POST 'http://caixa/v1.41/containers/term/resize?h=40&w=100'",
            ),
            Show("step11 exec term stty -F /dev/pts/0 size"),
            Show(
                "curl -s --unix-socket caixa.sock -X POST 'http://caixa/v1.41/containers/term/resize?h=x'",
            ),
            Show(r#"echo 'echo "in the exec: $(tty)"' | step11 exec -i term sh"#),
            Hide(
                "step11 rm -f $(step11 ps -aq) >/dev/null; kill $DAEMON; wait $DAEMON; ip netns del lab",
            ),
        ],
    },
];

const WAIT_DAEMON: &str = "for i in $(seq 100); do [ -S /tmp/eng/caixa.sock ] && /tmp/eng/step11 -H unix:///tmp/eng/caixa.sock version >/dev/null 2>&1 && break; sleep 0.1; done; sleep 0.2";

/// Runs the parts of one session in one shell, writing each part's
/// transcript to `out/<file>.txt`. `repo` is where the session starts.
pub fn run(repo: &Path, parts: &[Part], out: &Path, as_root: bool) -> Result<()> {
    // The session mounts a fresh /tmp and /run (below): a repository there
    // would vanish from its view, and every command after it fail.
    for fresh in ["/tmp", "/run"] {
        if repo.starts_with(fresh) || out.starts_with(fresh) {
            bail!(
                "the transcripts' sessions mount a fresh {fresh}, which would hide {}: clone the repository outside {fresh} (under your home directory, say)",
                repo.display()
            );
        }
    }
    let mut script = String::from(
        "set -u\n\
         mount -t tmpfs -o mode=1777 tmpfs /tmp\n\
         mount -t tmpfs -o mode=0755 tmpfs /run\n\
         ip link set lo up\n\
         show() { printf '# %s\\n' \"$2\" >> \"$1\"; eval \"$2\" >> \"$1\" 2>&1; \
         [ -z \"$(tail -c 1 \"$1\")\" ] || echo >> \"$1\"; }\n\
         trap 'if [ -x /tmp/eng/step11 ]; then /tmp/eng/step11 -H unix:///tmp/eng/caixa.sock rm -f \
         $(/tmp/eng/step11 -H unix:///tmp/eng/caixa.sock ps -aq 2>/dev/null) >/dev/null 2>&1; fi; \
         kill $(jobs -p) 2>/dev/null; wait' EXIT\n\
         hide() { eval \"$2\" >> \"$1\" 2>&1 || { echo \"hidden step failed: $2\" >&2; cat \"$1\" >&2; exit 99; }; }\n",
    );
    script.push_str(&format!("cd {}\n", shell_quote(&repo.to_string_lossy())));
    let log = out.join("hidden.log");
    for part in parts {
        let file = out.join(format!("{}.txt", part.file));
        let _ = std::fs::remove_file(&file);
        for line in part.lines {
            let (verb, command, to) = match line {
                Show(c) => ("show", c, &file),
                Hide(c) => ("hide", c, &log),
            };
            script.push_str(&format!(
                "{verb} {} {}\n",
                shell_quote(&to.to_string_lossy()),
                shell_quote(command)
            ));
        }
    }
    let script_path = out.join("session.sh");
    std::fs::write(&script_path, script)?;
    let mut unshare = if as_root {
        Command::new("unshare")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("unshare");
        sudo
    };
    let mut child = unshare
        .args(["--mount", "--propagation", "private", "--net", "--", "bash"])
        .arg(&script_path)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run unshare (util-linux)")?;
    // A session that hangs (a client that never returns) must not hang
    // CI: past the deadline its shell is killed.
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the session of {} ran for over 5 minutes and was killed",
                parts[0].file
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        bail!("the session of {} failed: {status}", parts[0].file);
    }
    Ok(())
}

/// `s` as one word for bash, in single quotes.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_survive_the_shell() {
        assert_eq!(super::shell_quote("a'b"), r"'a'\''b'");
    }
}
