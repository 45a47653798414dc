"""The rehearsal's Jenkins step simulator (tests/jenkins_sim.groovy) on a small pipeline
run for real: parallel branches, nodes on two agents, stash/unstash between them, Ant
patterns, credentials, archiving, a failing step named with its line."""
import pytest

from tests import jenkins_sim

PIPELINE = r'''
pipeline {
    agent none
    parameters { string(name: 'WHAT', defaultValue: 'x', description: '') }
    stages {
        stage('Work') {
            steps {
                script {
                    def branches = [:]
                    for (n in ['one', 'two']) {
                        def name = n
                        branches[name] = {
                            stage("${name}: make") {
                                node('cpu') {
                                    sh "mkdir -p out/${name} && echo ${name}-${params.WHAT} > out/${name}/a.txt && echo no > out/b.log"
                                    stash name: "s-${name}", includes: "out/${name}/**"
                                }
                            }
                            stage("${name}: use") {
                                node('cpu') {
                                    unstash "s-${name}"
                                    withCredentials([usernamePassword(credentialsId: 'c', usernameVariable: 'U', passwordVariable: 'P')]) {
                                        sh "test \"\$(cat out/${name}/a.txt)\" = ${name}-${params.WHAT} && test \"\$U\" = user && echo \$NODE_NAME > out/${name}/used-on"
                                    }
                                    archiveArtifacts artifacts: "out/${name}/**"
                                }
                            }
                        }
                    }
                    parallel branches
                }
            }
        }
    }
}
'''


def _run(tmp_path, simulator, text, **kw):
    jenkinsfile = tmp_path / "Jenkinsfile"
    jenkinsfile.write_text(text)
    agents = [jenkins_sim.Agent(n, ("cpu",), tmp_path / n) for n in ("agent-a", "agent-b")]
    for a in agents:
        a.workspace.mkdir()
    return agents, jenkins_sim.run(jenkinsfile, tmp_path / "sim", agents, params={"WHAT": "y"},
                                   credentials={"c": {"username": "user", "password": "pw"}},
                                   simulator=simulator, **kw)


def test_stash_carries_files_to_the_other_agent(tmp_path, jenkins_simulator):
    agents, sim = _run(tmp_path, jenkins_simulator, PIPELINE)
    assert sim.result == "SUCCESS", sim.error
    made = {e["name"]: e["agent"] for e in sim.of("stash")}
    assert {e["name"]: e["files"] for e in sim.of("stash")} == {"s-one": 1, "s-two": 1}
    for name in ("one", "two"):
        used = next(e["agent"] for e in sim.of("unstash") if e["name"] == f"s-{name}")
        assert used != made[f"s-{name}"]
        ws = tmp_path / used
        assert (ws / f"out/{name}/a.txt").read_text() == f"{name}-y\n"
        assert (ws / f"out/{name}/used-on").read_text() == f"{used}\n"
        archived = tmp_path / "sim/archive/out" / name
        assert sorted(p.name for p in archived.iterdir()) == ["a.txt", "used-on"]
    # out/b.log matched no include: it stayed on the agents that wrote it
    assert not (tmp_path / "sim/stashes/s-one/out/b.log").exists()


def test_a_failing_step_fails_the_run_naming_its_line(tmp_path, jenkins_simulator):
    text = PIPELINE.replace('test \\"\\$U\\" = user', 'test \\"\\$U\\" = somebody')
    _, sim = _run(tmp_path, jenkins_simulator, text)
    assert sim.result == "FAILURE"
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "somebody" in t)
    assert f"Jenkinsfile:{line}" in sim.error and "exit code 1" in sim.error


def test_a_label_no_agent_has_is_unmapped(tmp_path, jenkins_simulator):
    with pytest.raises(jenkins_sim.UnmappedStep, match="no rehearsal agent has the label 'arm64'"):
        _run(tmp_path, jenkins_simulator, PIPELINE.replace(
            "node('cpu') {\n                                    unstash",
            "node('arm64') {\n                                    unstash"))
