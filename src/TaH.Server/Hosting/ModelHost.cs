using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TaH.Engine.Constraints;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Serving;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;
using TaH.Server.Api;

namespace TaH.Server.Hosting;

public enum ModelState
{
    Loading,
    Ready,
    Failed,
    Stopping,
}

/// <summary>
/// The served model and the engine loop over it: loaded once by <see cref="EngineService"/>,
/// read by the endpoints. Before the model is ready, and while draining, requests get 503.
/// </summary>
public sealed class ModelHost : IDisposable
{
    private readonly ServerOptions _options;
    private readonly IMeterFactory _meters;
    private readonly ILogger<ModelHost> _logger;
    private volatile ModelState _state = ModelState.Loading;
    private TaHModel? _model;
    private TextTokenizer? _tokenizer;
    private InferenceEngine? _engine;
    private EngineLoop? _loop;
    private ConstraintCompiler? _constraints;
    private TaHMetrics? _metrics;

    public ModelHost(IOptions<ServerOptions> options, IMeterFactory meters, ILogger<ModelHost> logger)
    {
        _options = options.Value;
        _meters = meters;
        _logger = logger;
        var model = _options.Model ?? throw new InvalidOperationException("Server:Model (--model) is required");
        ServedModelName = string.IsNullOrWhiteSpace(_options.ServedModelName)
            ? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(model)))
            : _options.ServedModelName;
        DefaultPolicy = IterationPolicy.Parse(_options.Policy, _options.Threshold);
    }

    public string ServedModelName { get; }

    public IterationPolicy DefaultPolicy { get; }

    public ModelState State => _state;

    public string? LoadError { get; private set; }

    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;

    /// <summary>Test hook: awaited before loading, so tests can see the server while it loads.</summary>
    internal Func<Task>? BeforeLoad { get; set; }

    /// <summary>The served model as the engine describes it: what the server plans and reports from.</summary>
    public ServedModel Model => Engine.Served;

    /// <summary>The engine's one check of a request.</summary>
    public AdmissionGate Admission => Engine.Admission;

    public TextTokenizer Tokenizer => _tokenizer ?? throw NotReady();

    /// <summary>The engine itself, for tests that look at its pool.</summary>
    internal InferenceEngine Engine => _engine ?? throw NotReady();

    public EngineLoop Loop => _loop ?? throw NotReady();

    /// <summary>Compiles structured-output constraints for the model's vocabulary (and caches them).</summary>
    public ConstraintCompiler Constraints => _constraints ?? throw NotReady();

    /// <summary>Loads the checkpoint and tokenizer and builds the engine; a failure is kept in <see cref="LoadError"/>.</summary>
    public async Task LoadAsync()
    {
        if (BeforeLoad is { } gate)
        {
            await gate();
        }

        try
        {
            await Task.Run(() =>
            {
                _logger.LogInformation("Loading {ModelDirectory}", _options.Model);
                _model = ModelLoader.Load(_options.Model!, ModelOptions.Parse(_options.Device, _options.Weights, _options.DeciderWeights));
                _tokenizer = TextTokenizer.Load(_model.Directory, _options.ChatTemplate);
                _engine = new InferenceEngine(_model, new EngineOptions
                {
                    KvBlocks = _options.KvBlocks,
                    BlockSize = _options.BlockSize,
                    MaxModelLength = _options.MaxModelLen,
                    MaxRunning = _options.MaxRunning,
                    Elastic = NewElasticDepth(_model),
                    MaxSamples = _options.MaxN,
                });
                if (_engine.Served.Supports(DefaultPolicy) is { } problem)
                {
                    throw new ArgumentException($"--policy: {problem}");
                }

                _constraints = new ConstraintCompiler(TokenVocabulary.Create(_tokenizer, _engine.Served.VocabSize));
                _ = Task.Run(_constraints.Vocabulary.WarmUp);

                _metrics = new TaHMetrics(_meters);
                _loop = new EngineLoop(_engine, _metrics, new EngineLoopOptions { MaxWaiting = _options.MaxWaiting });
            });
            _state = ModelState.Ready;
            _logger.LogInformation(
                "Serving {ServedModel}: {Layers} layers, {Weights} weights ({WeightMegabytes} MB), max depth {MaxDepth}, decider {Decider}, context {MaxModelLen}, {KvBlocks} KV blocks, default policy {Policy}, elastic depth {Elastic}",
                ServedModelName, Model.Layers, Model.Weights.Name(), Model.WeightBytes / 1_000_000, Model.MaxDepth, Model.DeciderThreshold is { } t ? $"threshold {t}, {Model.DeciderWeights?.Name()} weights" : "none",
                Model.MaxModelLength, Model.Kv.TotalBlocks, DefaultPolicy,
                _engine!.Options.Elastic is { Enabled: true } e ? $"on (down to a depth-2 share of {e.Options.MinShare:P1}, steps of {e.Options.Interval.TotalSeconds:0.###} s)" : "off");
        }
        catch (Exception e)
        {
            LoadError = e.Message;
            _state = ModelState.Failed;
            throw;
        }
    }

    /// <summary>
    /// Elastic depth over the requests that leave the threshold to the server, on any model with
    /// a decider: with --elastic-depth it raises their threshold under load (and logs each change);
    /// without, it only reports their threshold and share as metrics.
    /// </summary>
    private ElasticDepth? NewElasticDepth(TaHModel model)
    {
        if (model.Decider is null)
        {
            return null;
        }

        double baseThreshold = DefaultPolicy.Kind == PolicyKind.Decider ? DefaultPolicy.ThresholdOr(model.Decider.Threshold) : model.Decider.Threshold;
        var elastic = new ElasticDepth(new ElasticDepthOptions { Enabled = _options.ElasticDepth, MinShare = _options.ElasticMinShare, Interval = TimeSpan.FromSeconds(_options.ElasticIntervalSeconds) }, baseThreshold);
        elastic.Changed += (before, after) =>
        {
            if (after.Raised)
            {
                _logger.LogInformation(
                    "Elastic depth: {Reason}: requests without their own threshold or target_share now run at threshold {Threshold:0.####} (aiming at a depth-2 share of {TargetShare:P1}, level {Level}; was {PreviousThreshold:0.####})",
                    after.Reason, after.Threshold, after.TargetShare, after.Level, before.Threshold);
            }
            else
            {
                _logger.LogInformation(
                    "Elastic depth: {Reason}: back to the default threshold {Threshold:0.####} (was {PreviousThreshold:0.####} at level {PreviousLevel})",
                    after.Reason, after.Threshold, before.Threshold, before.Level);
            }
        };
        return elastic;
    }

    /// <summary>The loop, or a 503 when the model is not serving.</summary>
    public EngineLoop RequireReady() =>
        _state switch
        {
            ModelState.Ready => _loop!,
            ModelState.Stopping => throw ApiException.ShuttingDown(),
            ModelState.Failed => throw ApiException.Unavailable($"The model failed to load: {LoadError}", "model_load_failed", 60),
            _ => throw ApiException.Unavailable("The model is still loading; retry shortly (GET /ready says when).", "model_loading", 5),
        };

    /// <summary>A 404 (model_not_found) unless a request names the served model or none.</summary>
    public void RequireModel(string? requested)
    {
        if (requested is not null && requested != ServedModelName)
        {
            throw ApiException.ModelNotFound(requested, ServedModelName);
        }
    }

    internal void MarkStopping()
    {
        if (_state == ModelState.Ready)
        {
            _state = ModelState.Stopping;
        }
    }

    private static InvalidOperationException NotReady() => new("the model is not loaded");

    public void Dispose()
    {
        _loop?.Dispose();
        _engine?.Dispose();
        _model?.Dispose();
        _metrics?.Dispose();
    }
}
