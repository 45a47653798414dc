package org.mxbuild.example;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Enumeration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/** Reads the float32 arrays of a NumPy .npz file (a zip of .npy files, as numpy.savez writes). */
final class Npz {

    /** A C-ordered float32 array. */
    static final class Array {
        final int[] shape;
        final float[] data;

        Array(int[] shape, float[] data) {
            this.shape = shape;
            this.data = data;
        }
    }

    private static final Pattern DESCR = Pattern.compile("'descr':\\s*'([^']*)'");
    private static final Pattern FORTRAN = Pattern.compile("'fortran_order':\\s*(True|False)");
    private static final Pattern SHAPE = Pattern.compile("'shape':\\s*\\(([^)]*)\\)");

    private Npz() {
    }

    static Map<String, Array> read(File file) throws IOException {
        Map<String, Array> arrays = new LinkedHashMap<String, Array>();
        ZipFile zip = new ZipFile(file);
        try {
            for (Enumeration<? extends ZipEntry> e = zip.entries(); e.hasMoreElements();) {
                ZipEntry entry = e.nextElement();
                String name = entry.getName();
                if (name.endsWith(".npy")) {
                    String key = name.substring(0, name.length() - 4);
                    arrays.put(key, npy(file + ":" + name, readAll(zip.getInputStream(entry))));
                }
            }
        } finally {
            zip.close();
        }
        return arrays;
    }

    /** One .npy: magic, version, header length, a Python dict literal header, the data. */
    static Array npy(String what, byte[] b) throws IOException {
        if (b.length < 10 || (b[0] & 0xff) != 0x93 || !new String(b, 1, 5, "US-ASCII").equals("NUMPY")) {
            throw new IOException(what + ": not a .npy file");
        }
        ByteBuffer buf = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        int major = b[6];
        int headerLen = major == 1 ? buf.getShort(8) & 0xffff : buf.getInt(8);
        int start = major == 1 ? 10 : 12;
        String header = new String(b, start, headerLen, "ISO-8859-1");
        Matcher descr = DESCR.matcher(header);
        Matcher fortran = FORTRAN.matcher(header);
        Matcher shape = SHAPE.matcher(header);
        if (!descr.find() || !fortran.find() || !shape.find()) {
            throw new IOException(what + ": cannot parse the header " + header.trim());
        }
        if (!descr.group(1).equals("<f4") || fortran.group(1).equals("True")) {
            throw new IOException(what + ": want little-endian float32 in C order, got " + header.trim());
        }
        String[] parts = shape.group(1).split(",");
        int n = 0;
        int[] dims = new int[parts.length];
        long count = 1;
        for (String p : parts) {
            if (!p.trim().isEmpty()) {
                dims[n] = Integer.parseInt(p.trim());
                count *= dims[n++];
            }
        }
        int offset = start + headerLen;
        if (b.length - offset != 4 * count) {
            throw new IOException(what + ": " + (b.length - offset) + " data bytes, want " + 4 * count);
        }
        float[] data = new float[(int) count];
        ByteBuffer body = ByteBuffer.wrap(b, offset, b.length - offset).slice().order(ByteOrder.LITTLE_ENDIAN);
        body.asFloatBuffer().get(data);
        int[] exact = new int[n];
        System.arraycopy(dims, 0, exact, 0, n);
        return new Array(exact, data);
    }

    private static byte[] readAll(InputStream in) throws IOException {
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] chunk = new byte[65536];
            for (int r; (r = in.read(chunk)) > 0;) {
                out.write(chunk, 0, r);
            }
            return out.toByteArray();
        } finally {
            in.close();
        }
    }
}
