package source

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// Debian's libjvm.so has both the USDT notes and the symbols: each path
// finds what it needs.
func TestInspectJVMSystem(t *testing.T) {
	const path = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"
	f, err := elf.Open(path)
	if os.IsNotExist(err) {
		t.Skipf("%s not installed", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lib, err := inspectJVM(f, false)
	if err != nil {
		t.Fatal(err)
	}
	if lib.method != MethodUSDT || len(lib.begin) == 0 || len(lib.end) == 0 || len(lib.vmop) == 0 || len(lib.gc) == 0 {
		t.Errorf("USDT: %+v", lib)
	}
	lib, err = inspectJVM(f, true)
	if err != nil {
		t.Fatal(err)
	}
	if lib.method != MethodUprobe || lib.symBegin == 0 || lib.symEnd == 0 || lib.symNotifyGC == 0 || lib.symSynced == 0 {
		t.Errorf("symbols: %+v", lib)
	}
}

func TestInspectJVMNothing(t *testing.T) {
	f, err := elf.Open("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := inspectJVM(f, false); err != errNoJVMProbes {
		t.Errorf("err = %v, want errNoJVMProbes", err)
	}
}

// args makes a /proc/<pid>/cmdline: NUL-separated, NUL-terminated.
func args(a ...string) []byte { return []byte(strings.Join(a, "\x00") + "\x00") }

func TestJavaService(t *testing.T) {
	for _, tc := range []struct {
		name, exe string
		cmdline   []byte
		want      string
	}{
		{"source file", "java", args("java", "-Xmx64m", "Server.java"), "Server"},
		{"class after -cp", "java", args("java", "-cp", "/app/lib/*", "com.example.Main", "--port", "8080"), "Main"},
		{"-jar: versions left out", "java", args("/usr/bin/java", "-XX:+UseG1GC", "-jar", "/opt/app/billing-1.2.jar"), "billing"},
		{"-jar: snapshot", "java", args("java", "-jar", "target/orders-0.0.1-SNAPSHOT.jar", "--spring.profiles.active=prod"), "orders"},
		{"-jar: qualifier", "java", args("java", "-jar", "guava-33.0.0-jre.jar"), "guava"},
		{"-jar: digits in the name are not a version", "java", args("java", "-jar", "/srv/auth-2fa.jar"), "auth-2fa"},
		{"-jar: no version", "java", args("java", "-jar", "app.jar"), "app"},
		{"module and class", "java", args("java", "--module-path", "mods", "-m", "com.example/com.example.App"), "App"},
		{"--module=", "java", args("java", "-p", "mods", "--module=com.example.billing"), "billing"},
		{"option values are not the class", "java", args("java", "--add-opens", "java.base/java.lang=ALL-UNNAMED",
			"--add-exports", "java.base/sun.nio.ch=ALL-UNNAMED", "--add-modules", "jdk.incubator.vector",
			"--enable-native-access", "ALL-UNNAMED", "-d", "java.base", "x.Y"), "Y"},
		{"argfile skipped", "java", args("java", "@/etc/app/jvm.args", "com.example.Worker"), "Worker"},
		{"main class only in an argfile", "java", args("java", "@/etc/app/all.args"), ""},
		{"shebang script", "java", args("java", "--source", "17", "/usr/local/bin/deploy.d/check", "x"), "check"},
		{"no main class", "java", args("java", "-version"), ""},
		{"-jar without a file", "java", args("java", "-jar"), ""},
		{"empty", "java", nil, ""},
		{"a bare slash", "java", args("java", "/"), ""},

		// Debian's tomcat10.service (catalina.sh).
		{"tomcat", "java", args("/usr/lib/jvm/default-java/bin/java",
			"-Djava.util.logging.config.file=/var/lib/tomcat10/conf/logging.properties",
			"-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager", "-Djava.awt.headless=true",
			"-Djdk.tls.ephemeralDHKeySize=2048", "-Djava.protocol.handler.pkgs=org.apache.catalina.webresources",
			"-Dorg.apache.catalina.security.SecurityListener.UMASK=0027",
			"--add-opens=java.base/java.lang=ALL-UNNAMED", "--add-opens=java.base/java.io=ALL-UNNAMED",
			"--add-opens=java.rmi/sun.rmi.transport=ALL-UNNAMED",
			"-classpath", "/usr/share/tomcat10/bin/bootstrap.jar:/usr/share/tomcat10/bin/tomcat-juli.jar",
			"-Dcatalina.base=/var/lib/tomcat10", "-Dcatalina.home=/usr/share/tomcat10", "-Djava.io.tmpdir=/tmp",
			"org.apache.catalina.startup.Bootstrap", "start"), "tomcat"},
		// kafka-server-start.sh (kafka-run-class.sh).
		{"kafka", "java", args("java", "-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
			"-Dkafka.logs.dir=/opt/kafka/bin/../logs", "-Dlog4j.configuration=file:/opt/kafka/bin/../config/log4j.properties",
			"-cp", "/opt/kafka/bin/../libs/activation-1.1.1.jar:/opt/kafka/bin/../libs/kafka_2.13-3.6.0.jar",
			"kafka.Kafka", "/opt/kafka/config/server.properties"), "kafka"},
		// Elasticsearch 8's server process, started by its CLI launcher.
		{"elasticsearch", "java", args("/usr/share/elasticsearch/jdk/bin/java", "-Des.networkaddress.cache.ttl=60",
			"-XX:+UseG1GC", "-Djava.io.tmpdir=/tmp/elasticsearch-8123", "--add-modules=jdk.incubator.vector",
			"-Xms1g", "-Xmx1g", "--module-path", "/usr/share/elasticsearch/lib", "--add-modules=jdk.net",
			"--add-modules=ALL-MODULE-PATH", "-m", "org.elasticsearch.server/org.elasticsearch.bootstrap.Elasticsearch"), "elasticsearch"},
		{"zookeeper", "java", args("java", "-Dzookeeper.log.dir=/logs", "-cp", "/apache-zookeeper/lib/*",
			"-Xmx1000m", "org.apache.zookeeper.server.quorum.QuorumPeerMain", "/conf/zoo.cfg"), "zookeeper"},
		{"maven (mvn)", "java", args("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "-classpath",
			"/usr/share/maven/boot/plexus-classworlds-2.x.jar", "-Dclassworlds.conf=/usr/share/maven/bin/m2.conf",
			"-Dmaven.home=/usr/share/maven", "-Dmaven.multiModuleProjectDirectory=/src",
			"org.codehaus.plexus.classworlds.launcher.Launcher", "package"), "maven"},
		{"gradle wrapper", "java", args("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "-Xmx64m", "-Xms64m",
			"-Dorg.gradle.appname=gradlew", "-classpath", "/src/gradle/wrapper/gradle-wrapper.jar",
			"org.gradle.wrapper.GradleWrapperMain", "build"), "gradle"},
		{"gradle daemon", "java", args("/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
			"--add-opens=java.base/java.util=ALL-UNNAMED", "-XX:MaxMetaspaceSize=384m", "-Xms256m", "-Xmx512m",
			"-Dfile.encoding=UTF-8", "-cp", "/root/.gradle/wrapper/dists/gradle-8.5-bin/x/gradle-8.5/lib/gradle-launcher-8.5.jar",
			"-javaagent:/root/.gradle/wrapper/dists/gradle-8.5-bin/x/gradle-8.5/lib/agents/gradle-instrumentation-agent-8.5.jar",
			"org.gradle.launcher.daemon.bootstrap.GradleDaemon", "8.5"), "gradle-daemon"},
		{"javac as a module", "java", args("java", "-m", "jdk.compiler/com.sun.tools.javac.Main", "-d", "out", "A.java"), "javac"},
		// The javac launcher maps libjvm.so too (checked with javac -d on
		// OpenJDK 17): its exe names it; -d DIR is no class.
		{"javac launcher", "javac", args("javac", "-d", "/tmp/out", "src/A.java"), ""},
		{"jshell launcher", "jshell", args("jshell", "--class-path", "lib.jar"), ""},

		// Hostile command lines: label-safe, bounded, no panic.
		{"invalid UTF-8", "java", args("java", "com.example.Ma\xffin\xc3"), "Ma\uFFFDin\uFFFD"},
		{"10 kB class name", "java", args("java", strings.Repeat("A", 10<<10)), strings.Repeat("A", maxServiceLen)},
		{"10 kB jar name", "java", args("java", "-jar", strings.Repeat("é", 5<<10)+"-1.0.jar"), strings.Repeat("é", maxServiceLen/2)},
		{"lone NULs", "java", []byte("\x00\x00\x00\x00"), ""},
		{"no terminating NUL", "java", []byte("java\x00-cp\x00x\x00Main"), "Main"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := javaService(tc.exe, tc.cmdline); got != tc.want {
				t.Errorf("javaService(%q, %q) = %q, want %q", tc.exe, tc.cmdline, got, tc.want)
			}
		})
	}
}

// Hostile command lines of every shape: a valid, bounded label value.
func FuzzJavaService(f *testing.F) {
	f.Add(args("java", "-jar", "a-1.0.jar"))
	f.Add(args("java", "-m", "m/"))
	f.Add(args("java", "--module=", "-cp"))
	f.Add([]byte("java\x00\xff\xfe.\xc3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := javaService("java", b)
		if !utf8.ValidString(s) || len(s) > maxServiceLen {
			t.Fatalf("javaService(%q) = %q: not a bounded UTF-8 label value", b, s)
		}
	})
}

// A cmdline past maxCmdline is cut at an argument's end.
func TestCmdlineBounded(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	long := args("java", "-cp", strings.Repeat("x", maxCmdline), "com.example.Main")
	if err := os.WriteFile(filepath.Join(dir, "7", "cmdline"), long, 0o644); err != nil {
		t.Fatal(err)
	}
	got := procFS(dir).cmdline(7)
	if want := args("java", "-cp"); string(got) != string(want) {
		t.Errorf("cmdline = %q…, want %q", got[:min(len(got), 20)], want)
	}
}
