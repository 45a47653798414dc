package org.mxbuild.example;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileReader;
import java.io.IOException;
import java.net.URL;
import java.security.CodeSource;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Enumeration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

import org.apache.mxnet.infer.javaapi.Predictor;
import org.apache.mxnet.javaapi.Context;
import org.apache.mxnet.javaapi.DType;
import org.apache.mxnet.javaapi.DataDesc;
import org.apache.mxnet.javaapi.NDArray;
import org.apache.mxnet.javaapi.Shape;

/**
 * Loads an exported MXNet model with the Java inference API, predicts one input and a batch,
 * compares with reference outputs and checks where MXNet's native libraries came from.
 * See README.md; exit status 0 = every check passed or was skipped, 1 = a check failed,
 * 2 = bad arguments or unreadable inputs.
 */
public final class SmokePredict {
    private static final String USAGE = "usage: SmokePredict MODEL_DIR [--prefix smokenet] [--epoch 0]"
            + " [--input data] [--reference MODEL_DIR/reference.npz] [--rtol 1e-5] [--atol 1e-6]"
            + " [--expect-lib-dir DIR]... [--forbid-tmp-natives] [--junit FILE]";

    private SmokePredict() {
    }

    public static void main(String[] args) throws Exception {
        File modelDir = null;
        File reference = null;
        File junit = null;
        String prefix = "smokenet";
        String input = "data";
        int epoch = 0;
        double rtol = 1e-5;
        double atol = 1e-6;
        List<String> expectDirs = new ArrayList<String>();
        boolean forbidTmp = false;
        try {
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                if (a.equals("--forbid-tmp-natives")) {
                    forbidTmp = true;
                } else if (a.startsWith("--") && i + 1 < args.length) {
                    String v = args[++i];
                    if (a.equals("--prefix")) {
                        prefix = v;
                    } else if (a.equals("--epoch")) {
                        epoch = Integer.parseInt(v);
                    } else if (a.equals("--input")) {
                        input = v;
                    } else if (a.equals("--reference")) {
                        reference = new File(v);
                    } else if (a.equals("--rtol")) {
                        rtol = Double.parseDouble(v);
                    } else if (a.equals("--atol")) {
                        atol = Double.parseDouble(v);
                    } else if (a.equals("--expect-lib-dir")) {
                        expectDirs.add(new File(v).getCanonicalPath());
                    } else if (a.equals("--junit")) {
                        junit = new File(v);
                    } else {
                        throw new IllegalArgumentException("unknown option " + a);
                    }
                } else if (modelDir == null && !a.startsWith("--")) {
                    modelDir = new File(a);
                } else {
                    throw new IllegalArgumentException("unexpected argument " + a);
                }
            }
            if (modelDir == null) {
                throw new IllegalArgumentException("MODEL_DIR is missing");
            }
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage() + "\n" + USAGE);
            System.exit(2);
        }
        Map<String, Npz.Array> ref = null;
        try {
            ref = Npz.read(reference != null ? reference : new File(modelDir, "reference.npz"));
            for (String k : new String[] {"single", "batch", "out_single", "out_batch"}) {
                if (!ref.containsKey(k)) {
                    throw new IOException("the reference has no array " + k + " (has " + ref.keySet() + ")");
                }
            }
        } catch (IOException e) {
            System.err.println("cannot read the reference outputs: " + e.getMessage());
            System.exit(2);
        }

        File tmp = new File(System.getProperty("java.io.tmpdir"));
        Set<String> tmpBefore = mxnetEntries(tmp);
        Report report = new Report();
        report.check("jvm_info", true, jvmInfo(), 0);

        // Creating the first Predictor loads the natives (MXNet's org.apache.mxnet.Base).
        Context ctx = Context.cpu();
        Npz.Array single = ref.get("single");
        Npz.Array batch = ref.get("batch");
        Predictor predictor = null;
        Throwable loadError = null;
        long t0 = System.nanoTime();
        try {
            List<DataDesc> inputs = Collections.singletonList(
                    new DataDesc(input, new Shape(single.shape), DType.Float32(), "NCHW"));
            predictor = new Predictor(new File(modelDir, prefix).getPath(), inputs,
                    Collections.singletonList(ctx), epoch);
        } catch (Throwable t) {
            loadError = t;
            t.printStackTrace();
        }
        double loadSeconds = (System.nanoTime() - t0) / 1e9;

        List<String> mapped = mappedNatives();
        checkNatives(report, mapped, expectDirs, loadSeconds);
        checkThinJar(report);

        // One input through the float[][] API (one flat array per model input)...
        if (predictor == null) {
            report.error("single_matches", loadError);
        } else {
            try {
                long t = System.nanoTime();
                float[] got = predictor.predict(new float[][] {single.data})[0];
                compare(report, "single_matches", got, ref.get("out_single"), rtol, atol, t);
            } catch (Throwable e) {
                e.printStackTrace();
                report.error("single_matches", e);
            }
        }
        // ...and a batch through the NDArray API (the Predictor adapts to the batch size).
        if (predictor == null) {
            report.error("batch_matches", loadError);
        } else {
            try {
                long t = System.nanoTime();
                NDArray nd = new NDArray(batch.data, new Shape(batch.shape), ctx);
                NDArray out = predictor.predictWithNDArray(Collections.singletonList(nd)).get(0);
                Npz.Array want = ref.get("out_batch");
                if (!Arrays.equals(out.shape().toArray(), want.shape)) {
                    report.check("batch_matches", false, "output shape " + out.shape() + ", want "
                            + Arrays.toString(want.shape), 0);
                } else {
                    compare(report, "batch_matches", out.toArray(), want, rtol, atol, t);
                }
            } catch (Throwable e) {
                e.printStackTrace();
                report.error("batch_matches", e);
            }
        }

        checkTmp(report, tmp, tmpBefore, mappedNatives(), forbidTmp);
        System.out.println(report.summary());
        if (junit != null) {
            report.writeJUnit(junit, "jvm_predictor");
        }
        System.exit(report.ok() ? 0 : 1);
    }

    /** |got - want| <= atol + rtol * |want| for every element (numpy.allclose). */
    static void compare(Report report, String name, float[] got, Npz.Array want, double rtol,
                        double atol, long startNanos) {
        double seconds = (System.nanoTime() - startNanos) / 1e9;
        if (got.length != want.data.length) {
            report.check(name, false, got.length + " values, want " + want.data.length, seconds);
            return;
        }
        double maxDiff = 0;
        int bad = -1;
        for (int i = 0; i < got.length; i++) {
            double diff = Math.abs((double) got[i] - want.data[i]);
            maxDiff = Math.max(maxDiff, diff);
            if (bad < 0 && !(diff <= atol + rtol * Math.abs((double) want.data[i]))) {
                bad = i;           // also catches NaN
            }
        }
        String seen = "max |got-want| " + (float) maxDiff + " over " + got.length + " values (rtol "
                + rtol + ", atol " + atol + ")";
        report.check(name, bad < 0, bad < 0 ? seen
                : seen + "; first mismatch [" + bad + "]: got " + got[bad] + ", want " + want.data[bad], seconds);
    }

    /** libmxnet.so and libmxnet-scala.so are mapped, from under --expect-lib-dir. */
    static void checkNatives(Report report, List<String> mapped, List<String> expectDirs, double seconds) {
        boolean mxnet = false;
        boolean scala = false;
        List<String> outside = new ArrayList<String>();
        for (String path : mapped) {
            String name = new File(path).getName();
            mxnet |= name.equals("libmxnet.so");
            // MXNet's jar loader extracts the JNI library as a file named plain "mxnet-scala"
            scala |= name.equals("libmxnet-scala.so") || name.equals("mxnet-scala");
            if (!under(path, expectDirs)) {
                outside.add(path);
            }
        }
        String name = "natives_from_packages";
        if (!mxnet || !scala) {
            report.check(name, false, "libmxnet.so and libmxnet-scala.so are not both loaded: " + mapped, seconds);
        } else if (expectDirs.isEmpty()) {
            report.skip(name, "no --expect-lib-dir given; loaded " + mapped);
        } else {
            report.check(name, outside.isEmpty(), outside.isEmpty() ? "loaded " + mapped
                    : "loaded from outside " + expectDirs + ": " + outside, seconds);
        }
    }

    /** The MXNet jar carries no native code (and nothing else on the classpath offers MXNet's). */
    static void checkThinJar(Report report) {
        String name = "thin_jar_has_no_native";
        try {
            CodeSource src = Predictor.class.getProtectionDomain().getCodeSource();
            File jar = src == null ? null : new File(src.getLocation().toURI());
            List<String> natives = new ArrayList<String>();
            if (jar != null && jar.isFile()) {
                ZipFile zip = new ZipFile(jar);
                try {
                    for (Enumeration<? extends ZipEntry> e = zip.entries(); e.hasMoreElements();) {
                        String entry = e.nextElement().getName();
                        if (entry.startsWith("lib/native/") && !entry.endsWith("/")
                                || entry.endsWith(".so") || entry.contains(".so.")) {
                            natives.add(entry);
                        }
                    }
                } finally {
                    zip.close();
                }
            }
            for (String res : new String[] {"lib/native/libmxnet.so", "lib/native/libmxnet-scala.so"}) {
                for (Enumeration<URL> e = SmokePredict.class.getClassLoader().getResources(res); e.hasMoreElements();) {
                    natives.add(e.nextElement().toString());
                }
            }
            report.check(name, natives.isEmpty(), (natives.isEmpty() ? "no native code in " : "native code in ")
                    + (jar == null ? "(unknown location)" : jar.getPath())
                    + (natives.isEmpty() ? "" : ": " + natives), 0);
        } catch (Exception e) {
            report.error(name, e);
        }
    }

    /** Nothing extracted to java.io.tmpdir (MXNet's jar loader makes an mxnet* directory there). */
    static void checkTmp(Report report, File tmp, Set<String> before, List<String> mapped, boolean forbid)
            throws IOException {
        Set<String> created = mxnetEntries(tmp);
        created.removeAll(before);
        List<String> fromTmp = new ArrayList<String>();
        String tmpPath = tmp.getCanonicalPath();
        for (String path : mapped) {
            // MXNet's NativeLibraryLoader extracts into java.io.tmpdir/mxnet<random>/
            if (path.startsWith(tmpPath + "/mxnet")) {
                fromTmp.add(path);
            }
        }
        String seen = "new mxnet* entries in " + tmp + ": " + created + "; natives loaded from them: " + fromTmp;
        if (!forbid) {
            report.skip("nothing_extracted", "no --forbid-tmp-natives given; " + seen);
        } else {
            report.check("nothing_extracted", created.isEmpty() && fromTmp.isEmpty(), seen, 0);
        }
    }

    static boolean under(String path, List<String> dirs) {
        for (String d : dirs) {
            if (path.startsWith(d.endsWith("/") ? d : d + "/")) {
                return true;
            }
        }
        return false;
    }

    static Set<String> mxnetEntries(File dir) {
        Set<String> s = new TreeSet<String>();
        String[] names = dir.list();
        for (String n : names == null ? new String[0] : names) {
            if (n.startsWith("mxnet")) {
                s.add(n);
            }
        }
        return s;
    }

    /** Files named libmxnet* or mxnet-scala mapped into this process (from /proc/self/maps). */
    static List<String> mappedNatives() throws IOException {
        Set<String> paths = new LinkedHashSet<String>();
        BufferedReader r = new BufferedReader(new FileReader("/proc/self/maps"));
        try {
            for (String line; (line = r.readLine()) != null;) {
                int slash = line.indexOf('/');
                String path = slash < 0 ? "" : line.substring(slash);
                String name = new File(path).getName();
                if (name.startsWith("libmxnet") || name.equals("mxnet-scala")) {
                    paths.add(path);
                }
            }
        } finally {
            r.close();
        }
        return new ArrayList<String>(paths);
    }

    static String jvmInfo() {
        return "Java " + System.getProperty("java.version") + " (" + System.getProperty("java.vendor")
                + ") at " + System.getProperty("java.home")
                + "; java.library.path=" + System.getProperty("java.library.path")
                + "; java.io.tmpdir=" + System.getProperty("java.io.tmpdir")
                + "; " + System.getProperty("os.name") + " " + System.getProperty("os.version")
                + " " + System.getProperty("os.arch");
    }
}
