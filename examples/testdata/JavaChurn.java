// The JVM integration tests' workload (run: java -Xlog:safepoint... JavaChurn.java).
// It waits for "go" on stdin (so the agent is attached first), allocates for
// CHURN_SECONDS, prints "done", and exits when stdin closes, so a poller
// has time to read the last counters.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.ThreadLocalRandom;

public class JavaChurn {
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        double secs = Double.parseDouble(System.getenv().getOrDefault("CHURN_SECONDS", "3"));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println("ready " + ProcessHandle.current().pid());
        if (in.readLine() == null) return;
        Object[] keep = new Object[512];
        long end = System.nanoTime() + (long) (secs * 1e9);
        while (System.nanoTime() < end) {
            for (int i = 0; i < 64; i++) {
                keep[ThreadLocalRandom.current().nextInt(keep.length)] = new byte[32 << 10];
                sink = new byte[8 << 10];
            }
        }
        System.out.println("done");
        in.readLine();
    }
}
