// A keep-alive HTTP/1.1 server whose main thread blocks in accept()
// (issue 16, case 12; java.net.ServerSocket without a timeout calls accept
// on a blocking socket): a thread per connection answers requests until
// the client closes. Prints its port once it listens.
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

public class KeepAlive {
    public static void main(String[] args) throws Exception {
        ServerSocket ln = new ServerSocket(0, 128, InetAddress.getLoopbackAddress());
        System.out.println(ln.getLocalPort());
        System.out.flush();
        while (true) {
            Socket conn = ln.accept();
            new Thread(() -> serve(conn)).start();
        }
    }

    static void serve(Socket conn) {
        byte[] answer = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n".getBytes(StandardCharsets.US_ASCII);
        try (conn) {
            InputStream in = conn.getInputStream();
            OutputStream out = conn.getOutputStream();
            int matched = 0; // of "\r\n\r\n", across reads
            byte[] buf = new byte[4096];
            for (int n; (n = in.read(buf)) > 0; ) {
                for (int i = 0; i < n; i++) {
                    byte want = (matched % 2 == 0) ? (byte) '\r' : (byte) '\n';
                    matched = buf[i] == want ? matched + 1 : (buf[i] == '\r' ? 1 : 0);
                    if (matched == 4) {
                        out.write(answer);
                        out.flush();
                        matched = 0;
                    }
                }
            }
        } catch (Exception e) {
            // the client went away
        }
    }
}
