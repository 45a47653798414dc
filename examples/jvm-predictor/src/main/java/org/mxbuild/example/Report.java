package org.mxbuild.example;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.util.ArrayList;
import java.util.List;

/** The checks' outcomes: one line each on stdout, optionally a JUnit XML report. */
final class Report {
    enum Status { PASSED, FAILED, ERROR, SKIPPED }

    private static final class Case {
        final String name;
        final Status status;
        final String message;
        final double seconds;

        Case(String name, Status status, String message, double seconds) {
            this.name = name;
            this.status = status;
            this.message = message;
            this.seconds = seconds;
        }
    }

    private final List<Case> cases = new ArrayList<Case>();

    /** Record a check: passed if ok, else failed; the message says what was seen. */
    void check(String name, boolean ok, String message, double seconds) {
        add(new Case(name, ok ? Status.PASSED : Status.FAILED, message, seconds));
    }

    void skip(String name, String why) {
        add(new Case(name, Status.SKIPPED, why, 0));
    }

    /** The check could not run: an exception on the way. */
    void error(String name, Throwable t) {
        add(new Case(name, Status.ERROR, t.toString(), 0));
    }

    private void add(Case c) {
        cases.add(c);
        System.out.printf("%-22s %-7s %s%n", c.name, c.status.name().toLowerCase(), c.message);
    }

    boolean ok() {
        for (Case c : cases) {
            if (c.status == Status.FAILED || c.status == Status.ERROR) {
                return false;
            }
        }
        return true;
    }

    String summary() {
        int[] n = new int[Status.values().length];
        for (Case c : cases) {
            n[c.status.ordinal()]++;
        }
        return cases.size() + " checks: " + n[0] + " passed, " + n[1] + " failed, " + n[2]
                + " errors, " + n[3] + " skipped";
    }

    void writeJUnit(File file, String suite) throws IOException {
        int failures = 0;
        int errors = 0;
        int skipped = 0;
        double total = 0;
        for (Case c : cases) {
            failures += c.status == Status.FAILED ? 1 : 0;
            errors += c.status == Status.ERROR ? 1 : 0;
            skipped += c.status == Status.SKIPPED ? 1 : 0;
            total += c.seconds;
        }
        StringBuilder x = new StringBuilder("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
        x.append(String.format("  <testsuite name=\"%s\" tests=\"%d\" failures=\"%d\" errors=\"%d\" "
                + "skipped=\"%d\" time=\"%.3f\">%n", esc(suite), cases.size(), failures, errors, skipped, total));
        for (Case c : cases) {
            x.append(String.format("    <testcase classname=\"%s\" name=\"%s\" time=\"%.3f\">",
                    esc(suite), esc(c.name), c.seconds));
            String tag = c.status == Status.FAILED ? "failure" : c.status == Status.ERROR ? "error"
                    : c.status == Status.SKIPPED ? "skipped" : null;
            if (tag != null) {
                x.append("<").append(tag).append(" message=\"").append(esc(c.message)).append("\"/>");
            }
            x.append("<system-out>").append(esc(c.message)).append("</system-out></testcase>\n");
        }
        x.append("  </testsuite>\n</testsuites>\n");
        Writer w = new OutputStreamWriter(new FileOutputStream(file), "UTF-8");
        try {
            w.write(x.toString());
        } finally {
            w.close();
        }
    }

    /** XML text/attribute escaping; characters XML 1.0 cannot hold become '?'. */
    private static String esc(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (char c : s.toCharArray()) {
            switch (c) {
                case '&': b.append("&amp;"); break;
                case '<': b.append("&lt;"); break;
                case '>': b.append("&gt;"); break;
                case '"': b.append("&quot;"); break;
                case '\n': b.append("&#10;"); break;
                default: b.append(c < 0x20 && c != '\t' ? '?' : c);
            }
        }
        return b.toString();
    }
}
