// Runs a Jenkinsfile the way Jenkins would, without Jenkins: the file is compiled and run
// by Groovy itself (its stages, conditions, loops, closures, string interpolation and its
// own functions), and each Pipeline step it calls is carried out here:
//   node(label)/agent {label}  an agent of the configuration with that label (one executor
//                               each; with avoid_previous_agent a branch's next node is
//                               another agent when one has the label: what a stash must
//                               carry really travels)
//   checkout scm               the configured checkout command in the agent's workspace (also
//                               the implicit one of a declarative stage with an agent)
//   sh                         `sh -xe -c` in the workspace, environment = base + agent +
//                               env.X set by the script + withEnv/withCredentials
//   stash/unstash              files copied into a stash directory and back (Ant patterns)
//   withCredentials            usernamePassword/file/string from the configured credentials
//   parallel                   threads; Groovy code runs one thread at a time (as Jenkins'
//                               CPS does), steps overlap
//   input                      approved when the configuration says so
//   junit/archiveArtifacts     recorded / copied into the archive directory
// A step, directive or property it does not know stops the run, naming it and the line.
// Every step is one JSON line in the events file (stage, agent, command, times, exit).
//   groovy jenkins_sim.groovy CONFIG.json        (tests/jenkins_sim.py writes CONFIG)
//   groovy jenkins_sim.groovy --serve            (many runs in one JVM: tests/jenkins_sim.Simulator)
import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import java.util.concurrent.locks.ReentrantLock
import org.codehaus.groovy.control.CompilerConfiguration

class MappingError extends RuntimeException {
    MappingError(String message) { super(message) }
}

class AbortException extends RuntimeException {
    AbortException(String message) { super(message) }
}

class Sim {
    static Map config
    static String jenkinsfileName
    static final ReentrantLock cps = new ReentrantLock()   // Groovy code: one thread at a time
    static final Object agentsMonitor = new Object()
    static final Set<String> busy = new HashSet<String>()
    static final Map<String, Integer> assigned = [:]
    static final Map<String, String> scriptEnv = Collections.synchronizedMap([:])
    static Map params = [:]
    static Map topAgent = null
    static File events
    static int steps = 0
    static long t0 = System.currentTimeMillis()

    // One run's state from its configuration (a served JVM runs many, one after another)
    static void begin(Map conf) {
        config = conf
        events = new File(conf.events)
        jenkinsfileName = new File(conf.jenkinsfile).name
        busy.clear(); assigned.clear(); scriptEnv.clear()
        params = [:]; topAgent = null; steps = 0
        t0 = System.currentTimeMillis()
        PipelineScript.TL.remove()
    }

    static synchronized int nextStep() { return ++steps }

    static synchronized void event(Map e) {
        events << JsonOutput.toJson(e) + "\n"
    }

    static double now() { return (System.currentTimeMillis() - t0) / 1000.0 }

    // where in the Jenkinsfile a throwable was raised (its line), for messages
    static String where(Throwable t) {
        def frame = t.stackTrace.find { it.fileName == jenkinsfileName && it.lineNumber > 0 }
        return frame ? "${jenkinsfileName}:${frame.lineNumber}" : jenkinsfileName
    }
}

class Ctx {
    Map agent = null                 // the node this thread is in
    Map lastAgent = null             // the branch's previous node
    List<Map> overlays = []          // withEnv / withCredentials, innermost last
    List<String> stages = []
    boolean inPipeline = false
    boolean inStages = false         // directly inside `stages { }`: declarative stages
    boolean inParameters = false
    boolean inOptions = false
    Map collector = null             // a declarative stage's directives while read
    List<String> labels = null       // agent { label … } while read
    List<Closure> expressions = null // when { expression … } while read

    Ctx branch() {
        def c = new Ctx()
        c.agent = agent
        c.overlays = new ArrayList(overlays)
        c.stages = new ArrayList(stages)
        return c
    }
}

class EnvVars extends GroovyObjectSupport {
    Object getProperty(String name) {
        def c = PipelineScript.ctx()
        if (name == 'WORKSPACE' && c.agent) { return c.agent.workspace }
        return PipelineScript.effectiveEnv(c).get(name)
    }

    void setProperty(String name, Object value) {
        Sim.scriptEnv.put(name, value == null ? null : value.toString())
    }
}

abstract class PipelineScript extends Script {
    static final ThreadLocal<Ctx> TL = new ThreadLocal<Ctx>()
    static final EnvVars ENV = new EnvVars()
    static final Map NONE = [agent: 'none']

    static Ctx ctx() {
        def c = TL.get()
        if (c == null) { c = new Ctx(); TL.set(c) }
        return c
    }

    static Map<String, String> effectiveEnv(Ctx c) {
        Map<String, String> env = [:]
        Sim.config.env.each { k, v -> env[k] = v.toString() }
        if (c.agent) {
            c.agent.env.each { k, v -> env[k] = v.toString() }
            env.WORKSPACE = c.agent.workspace
            env.NODE_NAME = c.agent.name
            env.NODE_LABELS = c.agent.labels.join(' ')
        }
        synchronized (Sim.scriptEnv) {
            Sim.scriptEnv.each { k, v -> if (v != null) { env[k] = v } }
        }
        c.overlays.each { o -> o.each { k, v -> env[k] = v.toString() } }
        return env
    }

    // Run `work` with the Groovy lock released (a step that waits or runs a command)
    static Object blocking(Closure work) {
        int holds = Sim.cps.holdCount
        holds.times { Sim.cps.unlock() }
        try {
            return work.call()
        } finally {
            holds.times { Sim.cps.lock() }
        }
    }

    static Map requireNode(String step) {
        def c = ctx()
        if (c.agent == null) {
            throw new MappingError("`${step}` outside a node: Jenkins has no workspace for it")
        }
        return c.agent
    }

    Object getProperty(String name) {
        switch (name) {
            case 'env': return ENV
            case 'params': return Sim.params
            case 'scm': return 'scm'
            case 'none': return NONE
        }
        try {
            return super.getProperty(name)
        } catch (MissingPropertyException e) {
            throw new MappingError("property `${name}` is not something the rehearsal knows " +
                                   "(env, params, scm, none)")
        }
    }

    def methodMissing(String name, args) {
        throw new MappingError("step or directive `${name}` has no rehearsal mapping " +
                               "(tests/jenkins_sim.groovy)")
    }

    // ------------------------------------------------------------ declarative structure

    def pipeline(Closure body) {
        def c = ctx()
        c.inPipeline = true
        try { body.call() } finally { c.inPipeline = false }
    }

    def agent(Object spec) {
        def c = ctx()
        if (c.collector != null) {
            c.collector.agent = spec
        } else if (c.inPipeline && !c.inStages) {
            Sim.topAgent = [spec: spec]
        } else {
            throw new MappingError("`agent` outside a pipeline or stage")
        }
    }

    def label(String name) {
        def c = ctx()
        if (c.labels == null) { throw new MappingError("`label` outside agent { }") }
        c.labels << name
    }

    def parameters(Closure body) {
        def c = ctx()
        c.inParameters = true
        Map defaults = [:]
        Sim.params = defaults
        try { body.call() } finally { c.inParameters = false }
        def unknown = Sim.config.params.keySet() - defaults.keySet()
        if (unknown) {
            throw new MappingError("the rehearsal sets parameters ${unknown} that the " +
                                   "Jenkinsfile does not declare (it has ${defaults.keySet()})")
        }
        Sim.params = defaults + Sim.config.params
        Sim.event([kind: 'params', params: Sim.params])
    }

    def param(Map spec, Object dflt) {
        if (!ctx().inParameters) { return null }
        Sim.params[spec.name] = spec.containsKey('defaultValue') ? spec.defaultValue : dflt
        return null
    }

    def string(Map spec) {
        if (spec.containsKey('credentialsId')) { return [type: 'string'] + spec }
        return param(spec, '')
    }

    def booleanParam(Map spec) { param(spec, false) }

    def text(Map spec) { param(spec, '') }

    def choice(Map spec) { param(spec, spec.choices ? spec.choices[0] : '') }

    def options(Closure body) {
        def c = ctx()
        c.inOptions = true
        try { body.call() } finally { c.inOptions = false }
    }

    def timestamps() { null }

    def timeout(Map spec) {
        if (!ctx().inOptions) { throw new MappingError("`timeout` without a body outside options") }
        Sim.event([kind: 'option', option: 'timeout', spec: spec.toString()])
    }

    def timeout(Map spec, Closure body) { body.call() }

    def stages(Closure body) {
        def c = ctx()
        c.inStages = true
        try { body.call() } finally { c.inStages = false }
    }

    def steps(Closure body) {
        def c = ctx()
        if (c.collector != null) { c.collector.steps = body } else { body.call() }
    }

    def when(Closure body) {
        def c = ctx()
        if (c.collector == null) { throw new MappingError("`when` outside a declarative stage") }
        c.collector.when = body
    }

    def expression(Closure body) {
        def c = ctx()
        if (c.expressions == null) { throw new MappingError("`expression` outside when { }") }
        c.expressions << body
    }

    def script(Closure body) { body.call() }

    def stage(String name, Closure body) {
        def c = ctx()
        if (!c.inStages) { return runStage(name, body) }
        Map spec = [name: name]
        c.collector = spec
        c.inStages = false
        try { body.call() } finally { c.collector = null }
        try {
            runDeclarativeStage(spec)
        } finally {
            c.inStages = true
        }
    }

    def runDeclarativeStage(Map spec) {
        def c = ctx()
        if (spec.when != null) {
            c.expressions = []
            try { spec.when.call() } finally { }
            def checks = c.expressions
            c.expressions = null
            if (!checks.every { it.call() }) {
                Sim.event([kind: 'stage', stage: (c.stages + [spec.name]).join(' / '),
                           skipped: 'when'])
                return null
            }
        }
        if (spec.steps == null) { throw new MappingError("stage '${spec.name}' has no steps") }
        def label = agentLabel(spec.agent ?: Sim.topAgent?.spec)
        // a declarative stage with an agent checks out first (Jenkins' default checkout;
        // options { skipDefaultCheckout() } would turn it off: not mapped)
        return runStage(spec.name) {
            if (label != null) {
                node(label) { checkout('scm'); spec.steps.call() }
            } else {
                spec.steps.call()
            }
        }
    }

    String agentLabel(Object spec) {
        if (spec == null || spec.is(NONE)) { return null }
        if (spec instanceof Closure) {
            def c = ctx()
            c.labels = []
            try { spec.call() } finally { }
            def labels = c.labels
            c.labels = null
            if (labels.size() != 1) { throw new MappingError("agent { } with labels ${labels}") }
            return labels[0]
        }
        throw new MappingError("agent ${spec}: only `none` and `{ label '…' }` are mapped")
    }

    def runStage(String name, Closure body) {
        def c = ctx()
        c.stages << name
        String path = c.stages.join(' / ')
        double start = Sim.now()
        String failure = null
        try {
            return body.call()
        } catch (Throwable t) {
            failure = t.message
            throw t
        } finally {
            Sim.event([kind: 'stage', stage: path, start: start, seconds: Sim.now() - start,
                       failed: failure])
            c.stages.remove(c.stages.size() - 1)
        }
    }

    // ------------------------------------------------------------ nodes and steps

    def node(String label, Closure body) {
        def c = ctx()
        Map agent = allocate(label, c)
        Map previous = c.agent
        c.agent = agent
        double start = Sim.now()
        try {
            return body.call()
        } finally {
            Sim.event([kind: 'node', stage: c.stages.join(' / '), agent: agent.name,
                       label: label, start: start, seconds: Sim.now() - start])
            c.agent = previous
            c.lastAgent = agent
            synchronized (Sim.agentsMonitor) {
                Sim.busy.remove(agent.name)
                Sim.agentsMonitor.notifyAll()
            }
        }
    }

    def node(Closure body) { node(null, body) }

    static Map allocate(String label, Ctx c) {
        List<Map> candidates = Sim.config.agents.findAll { label == null || label in it.labels }
        if (!candidates) {
            throw new MappingError("no rehearsal agent has the label '${label}' (agents: " +
                                   Sim.config.agents.collect { "${it.name} ${it.labels}" }.join(', ') + ")")
        }
        if (Sim.config.avoid_previous_agent && c.lastAgent != null && candidates.size() > 1) {
            candidates = candidates.findAll { it.name != c.lastAgent.name }
        }
        return blocking {
            synchronized (Sim.agentsMonitor) {
                while (true) {
                    def free = candidates.findAll { !(it.name in Sim.busy) }
                    if (free) {
                        def chosen = free.min { Sim.assigned.get(it.name, 0) }
                        Sim.busy.add(chosen.name)
                        Sim.assigned[chosen.name] = Sim.assigned.get(chosen.name, 0) + 1
                        return chosen
                    }
                    Sim.agentsMonitor.wait()
                }
            }
        }
    }

    def checkout(Object what) {
        Map agent = requireNode('checkout')
        new File(agent.workspace).mkdirs()
        if (Sim.config.dry_run) { return record('checkout', agent, [what: what.toString()]) }
        runCommand('checkout', agent, Sim.config.checkout, [:])
    }

    def sh(String script) { sh([script: script]) }

    def sh(Map args) {
        Map agent = requireNode('sh')
        if (Sim.config.dry_run && !args.returnStdout) {
            return record('sh', agent, [command: args.script.toString()])
        }
        return runCommand('sh', agent, args.script.toString(), args)
    }

    Object record(String kind, Map agent, Map extra) {
        def c = ctx()
        Sim.event([kind: kind, step: Sim.nextStep(), stage: c.stages.join(' / '),
                   agent: agent.name, dry: true] + extra)
        return null
    }

    Object runCommand(String kind, Map agent, String script, Map args) {
        def c = ctx()
        int n = Sim.nextStep()
        File log = new File(Sim.config.logs_dir, String.format('%04d-%s.log', n, kind))
        Map env = effectiveEnv(c)
        double start = Sim.now()
        def result = blocking {
            def pb = new ProcessBuilder(['sh', '-xe', '-c', script])
                .directory(new File(agent.workspace))
            pb.environment().clear()
            pb.environment().putAll(env)
            if (args.returnStdout) {
                pb.redirectError(log)
            } else {
                pb.redirectErrorStream(true)
                pb.redirectOutput(log)
            }
            def proc = pb.start()
            proc.outputStream.close()
            String out = args.returnStdout ? proc.inputStream.getText('UTF-8') : ''
            return [proc.waitFor(), out]
        }
        int code = result[0]
        Sim.event([kind: kind, step: n, stage: c.stages.join(' / '), agent: agent.name,
                   command: script, start: start, seconds: Sim.now() - start, exit: code,
                   log: log.path])
        if (code != 0 && !args.returnStatus) {
            throw new AbortException("script returned exit code ${code} (${kind} step ${n}, " +
                                     "log ${log.path})")
        }
        if (args.returnStdout) { return result[1] }
        return args.returnStatus ? code : null
    }

    // Ant-style patterns (what stash/archiveArtifacts/junit take): comma-separated,
    // `**` any depth (also none: `**/x` matches `x`), a trailing `/` means everything under it
    static List<String> matching(File base, String includes, String excludes) {
        def matchers = { String patterns ->
            (patterns ?: '').split(',')*.trim().findAll { it }.collectMany { String p ->
                if (p.endsWith('/')) { p += '**' }
                def globs = [p]
                while (p.startsWith('**/')) { p = p.substring(3); globs << p }
                globs.collect { java.nio.file.FileSystems.default.getPathMatcher("glob:" + it) }
            }
        }
        def inc = matchers(includes ?: '**')
        def exc = matchers(excludes)
        if (!base.isDirectory()) { return [] }
        def root = base.toPath()
        List<String> found = []
        base.eachFileRecurse(groovy.io.FileType.FILES) { File file ->
            def rel = root.relativize(file.toPath())
            if (inc.any { it.matches(rel) } && !exc.any { it.matches(rel) }) {
                found << rel.toString()
            }
        }
        return found.sort()
    }

    static long copyFiles(File from, List<String> names, File to) {
        long bytes = 0
        names.each { rel ->
            File dest = new File(to, rel)
            dest.parentFile.mkdirs()
            Files.copy(new File(from, rel).toPath(), dest.toPath(),
                       StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.COPY_ATTRIBUTES)
            bytes += dest.length()
        }
        return bytes
    }

    def stash(Map args) {
        Map agent = requireNode('stash')
        def c = ctx()
        if (Sim.config.dry_run) { return record('stash', agent, [name: args.name]) }
        double start = Sim.now()
        File ws = new File(agent.workspace)
        File store = new File(Sim.config.stash_dir, args.name.toString())
        def names = matching(ws, args.includes?.toString(), args.excludes?.toString())
        if (!names && !args.allowEmpty) {
            throw new AbortException("No files included in stash ‘${args.name}’")
        }
        long bytes = blocking {
            store.deleteDir()
            store.mkdirs()
            copyFiles(ws, names, store)
        }
        Sim.event([kind: 'stash', step: Sim.nextStep(), stage: c.stages.join(' / '),
                   agent: agent.name, name: args.name, files: names.size(), bytes: bytes,
                   start: start, seconds: Sim.now() - start])
    }

    def unstash(String name) {
        Map agent = requireNode('unstash')
        def c = ctx()
        if (Sim.config.dry_run) { return record('unstash', agent, [name: name]) }
        double start = Sim.now()
        File store = new File(Sim.config.stash_dir, name)
        if (!store.isDirectory()) { throw new AbortException("No such saved stash ‘${name}’") }
        def names = matching(store, '**', null)
        long bytes = blocking { copyFiles(store, names, new File(agent.workspace)) }
        Sim.event([kind: 'unstash', step: Sim.nextStep(), stage: c.stages.join(' / '),
                   agent: agent.name, name: name, files: names.size(), bytes: bytes,
                   start: start, seconds: Sim.now() - start])
    }

    def junit(Map args) {
        Map agent = requireNode('junit')
        if (Sim.config.dry_run) { return record('junit', agent, [:]) }
        def names = matching(new File(agent.workspace), args.testResults.toString(), null)
        if (!names && !args.allowEmptyResults) {
            throw new AbortException("No test report files were found: ${args.testResults}")
        }
        Sim.event([kind: 'junit', stage: ctx().stages.join(' / '), agent: agent.name,
                   files: names])
    }

    def archiveArtifacts(Map args) {
        Map agent = requireNode('archiveArtifacts')
        if (Sim.config.dry_run) { return record('archive', agent, [:]) }
        File ws = new File(agent.workspace)
        def names = matching(ws, args.artifacts.toString(), args.excludes?.toString())
        if (!names && !args.allowEmptyArchive) {
            throw new AbortException("No artifacts found that match ${args.artifacts}")
        }
        blocking { copyFiles(ws, names, new File(Sim.config.archive_dir)) }
        Sim.event([kind: 'archive', stage: ctx().stages.join(' / '), agent: agent.name,
                   files: names.size()])
    }

    def usernamePassword(Map spec) { [type: 'usernamePassword'] + spec }

    def file(Map spec) { [type: 'file'] + spec }

    def withCredentials(List bindings, Closure body) {
        Map overlay = [:]
        bindings.each { b ->
            def cred = Sim.config.credentials[b.credentialsId]
            if (cred == null) {
                throw new MappingError("credentials '${b.credentialsId}' are not configured " +
                                       "in the rehearsal (it has ${Sim.config.credentials.keySet()})")
            }
            switch (b.type) {
                case 'usernamePassword':
                    overlay[b.usernameVariable] = cred.username
                    overlay[b.passwordVariable] = cred.password
                    break
                case 'file':
                case 'string':
                    overlay[b.variable] = b.type == 'file' ? cred.file : cred.secret
                    break
                default:
                    throw new MappingError("credentials binding ${b.type}")
            }
        }
        withOverlay(overlay, body)
    }

    def withEnv(List vars, Closure body) {
        Map overlay = [:]
        vars.each { v ->
            def s = v.toString()
            int eq = s.indexOf('=')
            if (eq < 1) { throw new MappingError("withEnv entry '${s}' is not NAME=VALUE") }
            overlay[s.substring(0, eq)] = s.substring(eq + 1)
        }
        withOverlay(overlay, body)
    }

    def withOverlay(Map overlay, Closure body) {
        def c = ctx()
        c.overlays << overlay
        try { return body.call() } finally { c.overlays.remove(c.overlays.size() - 1) }
    }

    def parallel(Map branches) {
        def c = ctx()
        Map failures = Collections.synchronizedMap([:])
        def threads = branches.findAll { k, v -> k != 'failFast' }.collect { name, body ->
            Ctx child = c.branch()
            Thread.start("branch ${name}") {
                TL.set(child)
                Sim.cps.lock()
                try {
                    body.call()
                } catch (Throwable t) {
                    failures[name] = "${Sim.where(t)}: ${t.message}"
                    Sim.event([kind: 'branch', branch: name, failed: failures[name]])
                } finally {
                    Sim.cps.unlock()
                }
            }
        }
        blocking { threads*.join() }
        if (failures) {
            def mapping = failures.values().find { it.contains('has no rehearsal mapping') ||
                                                  it.contains('rehearsal') }
            String text = "parallel branches failed: " + failures.collect { k, v -> "${k} (${v})" }.join('; ')
            if (mapping) { throw new MappingError(text) }
            throw new AbortException(text)
        }
    }

    def input(Map args) {
        String message = args.message?.toString()
        if (!Sim.config.approve_input) { throw new AbortException("input not approved: ${message}") }
        Sim.event([kind: 'input', stage: ctx().stages.join(' / '), message: message,
                   approved: true])
    }

    def input(String message) { input([message: message]) }

    def readJSON(Map args) {
        def slurper = new JsonSlurper()
        if (args.text != null) { return slurper.parseText(args.text.toString()) }
        Map agent = requireNode('readJSON')
        return slurper.parse(new File(agent.workspace, args.file.toString()))
    }

    def echo(Object message) {
        Sim.event([kind: 'echo', stage: ctx().stages.join(' / '), message: message.toString()])
    }

    def error(String message) { throw new AbortException(message) }
}

// Run the Jenkinsfile of one configuration; the exit code: 0 SUCCESS, 1 FAILURE, 3 UNMAPPED
int runOnce(String configPath) {
    Sim.begin(new JsonSlurper().parse(new File(configPath)) as Map)
    new File(Sim.config.logs_dir).mkdirs()
    def cc = new CompilerConfiguration()
    cc.scriptBaseClass = PipelineScript.name
    def shell = new GroovyShell(this.class.classLoader, new Binding(), cc)
    int exitCode = 0
    Sim.cps.lock()
    try {
        def pipeline = shell.parse(new File(Sim.config.jenkinsfile))
        pipeline.run()
        Sim.event([kind: 'result', result: 'SUCCESS', seconds: Sim.now()])
    } catch (MappingError e) {
        Sim.event([kind: 'result', result: 'UNMAPPED', error: "${Sim.where(e)}: ${e.message}",
                   seconds: Sim.now()])
        exitCode = 3
    } catch (Throwable e) {
        Sim.event([kind: 'result', result: 'FAILURE', error: "${Sim.where(e)}: ${e.message}",
                   seconds: Sim.now()])
        exitCode = 1
    } finally {
        Sim.cps.unlock()
    }
    return exitCode
}

// Groovy's own parser on a file: "ok" or its first error lines
String parseOnly(String path) {
    try {
        new GroovyShell().parse(new File(path))
        return "ok"
    } catch (Exception e) {
        return "error " + e.message.readLines().take(2).join(" ")
    }
}

if (args[0] == '--serve') {
    // One request per line on stdin (`run CONFIG` or `parse FILE`), one answer line each,
    // after the marker: a JVM start is about a second of CPU, a warm run a fraction of it.
    def requests = new BufferedReader(new InputStreamReader(System.in))
    String line
    while ((line = requests.readLine()) != null) {
        def (verb, path) = line.split(' ', 2) as List
        String answer = verb == 'run' ? runOnce(path).toString() : parseOnly(path)
        System.out.println("@@jenkins-sim " + answer)
        System.out.flush()
    }
    System.exit(0)
}
System.exit(runOnce(args[0]))
