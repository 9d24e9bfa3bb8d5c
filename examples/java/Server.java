// A single-file Java HTTP service (run: java Server.java [port] [--pause-every-ms N] [--no-churn])
// that allocates on every request and in the background, so the collector
// runs several times a second. pausewatch shows its safepoints with their
// cause. --pause-every-ms makes long pauses on purpose: System.gc() (a full,
// stop-the-world collection) over a large live heap.
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

public class Server {
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 8081;
        long pauseEveryMs = 0;
        boolean churnOn = true;
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--pause-every-ms") && i + 1 < args.length) pauseEveryMs = Long.parseLong(args[++i]);
            else if (args[i].equals("--no-churn")) churnOn = false;
        }
        if (pauseEveryMs > 0) {
            final long every = pauseEveryMs;
            Thread pauser = new Thread(() -> {
                // Many small live objects: a full collection must trace them all.
                Object[] ballast = new Object[1_000_000];
                for (int i = 0; i < ballast.length; i++) ballast[i] = new int[4];
                sink = ballast;
                while (true) {
                    try { Thread.sleep(every); } catch (InterruptedException e) { return; }
                    long t0 = System.nanoTime();
                    System.gc();
                    System.out.println("deliberate pause: " + (System.nanoTime() - t0) / 1_000_000 + " ms");
                }
            });
            pauser.setDaemon(true);
            pauser.start();
        }
        Thread churn = new Thread(() -> {
            List<byte[]> keep = new ArrayList<>();
            for (int i = 0; i < 256; i++) keep.add(new byte[0]);
            while (true) {
                // A rotating live set plus short-lived garbage: young
                // collections, and now and then an old one.
                keep.set(ThreadLocalRandom.current().nextInt(keep.size()), new byte[64 << 10]);
                sink = new byte[16 << 10];
                try { Thread.sleep(0, 200_000); } catch (InterruptedException e) { return; }
            }
        });
        churn.setDaemon(true);
        if (churnOn) churn.start();

        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 128);
        server.createContext("/", ex -> {
            List<int[]> garbage = new ArrayList<>();
            for (int i = 0; i < 1000; i++) garbage.add(new int[32]);
            byte[] body = ("ok " + garbage.size() + "\n").getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(200, body.length);
            try (OutputStream os = ex.getResponseBody()) { os.write(body); }
        });
        server.start();
        System.out.println("example service on http://127.0.0.1:" + port + "/");
    }
}
