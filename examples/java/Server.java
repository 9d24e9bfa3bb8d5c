// A single-file Java HTTP service (run: java Server.java [port]) that
// allocates on every request and in the background, so the collector runs
// several times a second. pausewatch shows its safepoints with their cause.
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
        churn.start();

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
