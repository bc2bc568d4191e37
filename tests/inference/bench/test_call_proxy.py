"""CallProxy and profile_engine's timers on CPU fakes: a proxied object's calls go through the wrapper,
its attributes stay its own; _instrument's restore puts every wrapped method and object back."""
import types

from inference.bench.call_proxy import CallProxy
from inference.bench.profile_engine import _instrument


class _Sampler:
    vocab = 7

    def __call__(self, x):
        return x + 1


def test_a_proxy_calls_through_its_wrapper_and_keeps_the_objects_attributes():
    seen = []
    inner = _Sampler()
    proxy = CallProxy(inner, lambda x: seen.append(x) or inner(x))
    assert proxy(2) == 3 and seen == [2]
    assert proxy.vocab == 7


def _fake_llm():
    class Obj:
        pass

    sched, builder, model, runner, eng = Obj(), Obj(), Obj(), Obj(), Obj()
    for o, names in ((sched, ("schedule", "advance", "resolve")), (builder, ("build",)),
                     (model, ("encode_images",)), (runner, ("_image_embeddings", "launch", "collect"))):
        for n in names:
            setattr(type(o), n, lambda self, n=n: n)  # class methods: the instance wrappers go over them
    runner.batch_builder, runner.model, runner.sampler = builder, model, _Sampler()
    eng.scheduler, eng.runner, eng.processor = sched, runner, _Sampler()
    return types.SimpleNamespace(engine=eng)


def test_instrument_times_every_phase_and_restores_them():
    llm = _fake_llm()
    eng, runner = llm.engine, llm.engine.runner
    processor, sampler = eng.processor, runner.sampler
    timers, restore = _instrument(llm, sync=False)
    assert eng.scheduler.schedule() == "schedule" and runner.launch() == "launch"
    assert eng.processor(1) == 2 and runner.sampler(3) == 4 and runner.sampler.vocab == 7
    assert timers.calls == {"schedule": 1, "launch_total": 1, "processor": 1, "sampler_launch": 1}
    restore()
    assert eng.processor is processor and runner.sampler is sampler
    assert "launch" not in vars(runner) and "schedule" not in vars(eng.scheduler)
