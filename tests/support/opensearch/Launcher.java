// An embedded single-node OpenSearch with the k-NN plugin, for the test suite (see README.md).
//
//   java -Xms512m -Xmx1g -cp 'lib/*:lib/knn/*' Launcher.java HOME HTTP_PORT     (source-file launch), or
//   java -Xms512m -Xmx1g -cp 'classes:lib/*:lib/knn/*' Launcher HOME HTTP_PORT  (compiled; start.sh does this)
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
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.core.config.Configurator;
import org.opensearch.action.ActionRequest;
import org.opensearch.action.admin.indices.create.CreateIndexRequest;
import org.opensearch.action.admin.indices.mapping.put.PutMappingRequest;
import org.opensearch.action.support.ActionFilter;
import org.opensearch.common.settings.Settings;
import org.opensearch.common.xcontent.XContentHelper;
import org.opensearch.common.xcontent.json.JsonXContent;
import org.opensearch.core.action.ActionListener;
import org.opensearch.env.Environment;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.knn.plugin.KNNPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.ActionPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public class Launcher {

    /** Node's constructor that takes class-path plugins is protected: this is all the subclass is for. */
    static final class TestNode extends Node {
        TestNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    /**
     * Turns away (HTTP 400) a mapping with a knn_vector field that is not on the lucene engine. Without it
     * such an index is created fine and the first write to it never answers: the faiss/nmslib JNI library
     * is missing (UnsatisfiedLinkError in a write thread, see main) and the shard stays stuck until restart.
     */
    public static final class LuceneOnlyKnn extends Plugin implements ActionPlugin {
        @Override
        public List<ActionFilter> getActionFilters() {
            return List.of(new ActionFilter.Simple() {
                @Override
                public int order() {
                    return Integer.MIN_VALUE;
                }

                @Override
                protected boolean apply(String action, ActionRequest request, ActionListener<?> listener) {
                    String mapping = null;
                    if (request instanceof CreateIndexRequest) {
                        mapping = ((CreateIndexRequest) request).mappings();
                    } else if (request instanceof PutMappingRequest) {
                        mapping = ((PutMappingRequest) request).source();
                    }
                    if (mapping == null || !mapping.contains("knn_vector")) {
                        return true;
                    }
                    String field;
                    try {
                        field = nonLuceneKnnField(XContentHelper.convertToMap(JsonXContent.jsonXContent, mapping, false), "");
                    } catch (RuntimeException e) {
                        return true; // not ours to judge: OpenSearch reports a malformed mapping itself
                    }
                    if (field == null) {
                        return true;
                    }
                    listener.onFailure(new IllegalArgumentException("knn_vector field [" + field + "]: this test node "
                        + "has no native k-NN libraries, so only \"method\": {\"engine\": \"lucene\", ...} works "
                        + "(faiss, the default engine, and nmslib do not; nor does model_id)"));
                    return false;
                }
            });
        }

        /** The path of the first knn_vector field under {@code node} whose engine is not lucene, or null. */
        static String nonLuceneKnnField(Map<?, ?> node, String path) {
            if ("knn_vector".equals(node.get("type"))) {
                Object method = node.get("method");
                boolean lucene = method instanceof Map && "lucene".equals(((Map<?, ?>) method).get("engine"));
                return lucene && !node.containsKey("model_id") ? null : path;
            }
            for (Map.Entry<?, ?> entry : node.entrySet()) {
                if (entry.getValue() instanceof Map) {
                    String key = String.valueOf(entry.getKey());
                    boolean structural = key.equals("properties") || key.equals("mappings") || key.equals("_doc");
                    String sub = structural ? path : (path.isEmpty() ? key : path + "." + key);
                    String found = nonLuceneKnnField((Map<?, ?>) entry.getValue(), sub);
                    if (found != null) {
                        return found;
                    }
                }
            }
            return null;
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
        // log4j's own shutdown hook would stop logging while ours is still closing the node
        System.setProperty("log4j.shutdownHookEnabled", "false");
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

        List<Class<? extends Plugin>> plugins = Arrays.asList(Netty4Plugin.class, ReindexPlugin.class, KNNPlugin.class, LuceneOnlyKnn.class);
        Node node = new TestNode(environment, plugins);

        // Without Bootstrap nothing halts the JVM on an Error in a pool thread: the thread dies, the request
        // that ran on it never answers. The usual one here: a faiss/nmslib k-NN field (their JNI libraries
        // are not in the Maven zip) that got past LuceneOnlyKnn, e.g. through an index template. Say so in
        // node.log instead of a bare stack trace.
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
