// An embedded single-node OpenSearch with the k-NN plugin, for the test suite (see README.md).
//
//   java -Xms512m -Xmx1g -cp 'lib/*:lib/knn/*' Launcher.java HOME HTTP_PORT
//
// HOME must hold empty modules/ and plugins/ folders; data goes to HOME/data. The node runs until the
// process gets SIGTERM/SIGINT, then closes cleanly. Nothing here goes through the distribution's
// Bootstrap: no security manager, no jar-hell check, no bootstrap checks, no plugin descriptors; the
// plugins come straight from the class path.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.core.config.Configurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.knn.plugin.KNNPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public class Launcher {

    /** Node's constructor that takes class-path plugins is protected: this is all the subclass is for. */
    static final class TestNode extends Node {
        TestNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java -cp 'lib/*:lib/knn/*' Launcher.java HOME HTTP_PORT");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        int httpPort = Integer.parseInt(args[1]);
        Files.createDirectories(home.resolve("modules"));
        Files.createDirectories(home.resolve("plugins"));
        Files.createDirectories(home.resolve("config"));
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));

        // log4j-core without a configuration file logs ERROR only; INFO is what tells why a start failed.
        // The default context selector gives each class loader its own logger context, and a source-file
        // launch loads this class in a loader of its own: one context for the whole JVM, or setting the
        // level here would not reach OpenSearch's loggers.
        System.setProperty("log4j2.contextSelector", "org.apache.logging.log4j.core.selector.BasicContextSelector");
        Configurator.setRootLevel(Level.INFO);
        Configurator.setLevel("org.opensearch.deprecation", Level.ERROR);

        Settings settings = Settings.builder()
            .put("cluster.name", "pi-test")
            .put("node.name", "pi-test-node")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", httpPort)
            // transport is only for the node itself; keep it off the default 9300 range
            .put("transport.port", (httpPort + 100) + "-" + (httpPort + 199))
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", true)
            .put("node.max_local_storage_nodes", 1)
            .build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings, Collections.emptyMap(), home.resolve("config"), () -> "pi-test-node");

        List<Class<? extends Plugin>> plugins = Arrays.asList(Netty4Plugin.class, KNNPlugin.class);
        Node node = new TestNode(environment, plugins);

        // Without Bootstrap nothing halts the JVM on an Error in a pool thread: the thread dies, the request
        // that ran on it never answers. The usual one here: a faiss/nmslib k-NN field (their JNI libraries
        // are not in the Maven zip). Say so in node.log instead of a bare stack trace.
        Thread.setDefaultUncaughtExceptionHandler((thread, e) -> {
            System.err.println("pi-test-node: uncaught " + e + " in thread " + thread.getName());
            if (e instanceof UnsatisfiedLinkError) {
                System.err.println("pi-test-node: only the lucene k-NN engine works on this node: give every "
                    + "knn_vector field \"method\": {\"engine\": \"lucene\", ...}; faiss and nmslib need native "
                    + "libraries (and faiss is the default engine when a mapping names none)");
            }
            e.printStackTrace();
        });

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "pi-test-node-shutdown"));

        try {
            node.start();
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
        System.err.println("pi-test-node: started, http on 127.0.0.1:" + httpPort);
        // OpenSearch's threads are daemons: keep the JVM alive until a signal runs the shutdown hook
        stopped.await();
    }
}
