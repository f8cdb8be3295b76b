// memwatch's Java workload: `heap` keeps 1 MiB arrays on the Java heap, `direct` keeps 1 MiB
// direct ByteBuffers (native memory), both touching every page, until something stops them;
// `hold MIB` keeps MIB MiB on the heap, prints "ready" and waits for stdin to close;
// `churn LIVE SECONDS` keeps LIVE MiB live and allocates 4 MiB garbage arrays for SECONDS
// seconds, then prints "survived".
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

public class Grow {
    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "heap";
        List<Object> kept = new ArrayList<>();
        if (mode.equals("hold")) {
            int mib = Integer.parseInt(args[1]);
            for (int i = 0; i < mib; i++) {
                byte[] b = new byte[1 << 20];
                for (int j = 0; j < b.length; j += 4096) b[j] = 1;
                kept.add(b);
            }
            System.out.println("ready");
            System.out.flush();
            while (System.in.read() >= 0) {}
            return;
        }
        if (mode.equals("churn")) {
            int live = Integer.parseInt(args[1]);
            long end = System.currentTimeMillis() + 1000L * Integer.parseInt(args[2]);
            for (int i = 0; i < live; i++) {
                byte[] b = new byte[1 << 20];
                for (int j = 0; j < b.length; j += 4096) b[j] = 1;
                kept.add(b);
            }
            System.out.println("ready");
            System.out.flush();
            long sum = 0;
            while (System.currentTimeMillis() < end) {
                byte[] g = new byte[4 << 20];
                for (int j = 0; j < g.length; j += 4096) g[j] = 1;
                sum += g[4096];
                Thread.sleep(2);
            }
            System.out.println("survived " + sum);
            return;
        }
        System.out.println("ready");
        System.out.flush();
        for (int i = 0; ; i++) {
            if (mode.equals("direct")) {
                ByteBuffer b = ByteBuffer.allocateDirect(1 << 20);
                for (int j = 0; j < b.capacity(); j += 4096) b.put(j, (byte) 1);
                kept.add(b);
            } else {
                byte[] b = new byte[1 << 20];
                for (int j = 0; j < b.length; j += 4096) b[j] = 1;
                kept.add(b);
            }
            if (i % 8 == 0) Thread.sleep(40);
        }
    }
}
