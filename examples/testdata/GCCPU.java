import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;

/**
 * The GC CPU test's JVM workload. Says "ready", waits for "go" on stdin (so
 * the agent is attached first), then for GCCPU_SECONDS allocates against a
 * live set that keeps the collector's threads busy (young collections with
 * much to copy, and with G1 concurrent cycles), says "done", and idles
 * until stdin closes: from then on its collector threads' CPU stands still.
 */
public class GCCPU {
    public static void main(String[] args) throws Exception {
        double seconds = Double.parseDouble(System.getenv().getOrDefault("GCCPU_SECONDS", "6"));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println("ready " + ProcessHandle.current().pid());
        System.out.flush();
        if (in.readLine() == null) {
            return;
        }
        List<Object[]> live = new ArrayList<>();
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long n = 0;
        while (System.nanoTime() < end) {
            Object[] chunk = new Object[64];
            for (int i = 0; i < chunk.length; i++) {
                chunk[i] = new long[4];
            }
            // About 40 MB live, replaced slowly: survivors to copy, old
            // regions to mark.
            if (live.size() < 12_000) {
                live.add(chunk);
            } else {
                live.set((int) (n % live.size()), chunk);
            }
            n++;
        }
        System.out.println("done " + n);
        System.out.flush();
        in.readLine();
    }
}
