//! How many messages wait in each of the topology's queues, asked of RabbitMQ with a passive declare (no
//! management plugin needed): the router's input, each agency's inbox, each stage's dead letters.

use lapin::options::QueueDeclareOptions;
use lapin::types::{FieldTable, ShortString};

use crate::config::{BusConfig, redact_url};
use crate::connection::open;
use crate::dead_letters::DeadLetterError;
use crate::topology::{Stage, Topology};

/// One queue's depth: ready messages (RabbitMQ's `message_count`), and how many consumers read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// The queue's name.
    pub queue: String,
    /// Messages ready for delivery; `None` when the queue does not exist (yet).
    pub messages: Option<u32>,
    /// Consumers attached; `None` when the queue does not exist.
    pub consumers: Option<u32>,
}

/// Every queue of `topology` with its depth, in a stable order: the ingest and router queues, the inboxes
/// in the topology's agency order, then the dead letters by stage.
///
/// # Errors
/// [`DeadLetterError::Connect`] when RabbitMQ cannot be reached, [`DeadLetterError::Broker`] when a queue
/// cannot be asked about for another reason than its absence.
pub async fn queue_depths(config: &BusConfig, topology: &Topology) -> Result<Vec<QueueDepth>, DeadLetterError> {
    let mut queues = vec![topology.ingest_queue(), topology.router_queue()];
    queues.extend(topology.agencies().iter().map(|agency| topology.inbox_queue(agency)));
    queues.extend(Stage::ALL.iter().map(|stage| topology.dead_letter_queue(*stage)));
    depths_of(config, queues).await
}

/// The depth of each of `queues`, in order, on one connection.
async fn depths_of(config: &BusConfig, queues: Vec<String>) -> Result<Vec<QueueDepth>, DeadLetterError> {
    config.validate()?;
    let connect = |source| DeadLetterError::Connect { url: redact_url(&config.amqp_url), source };
    let connection = open(config, "concordat-queue-depths").await.map_err(connect)?;
    let mut depths = Vec::with_capacity(queues.len());
    let mut failed = None;
    for queue in queues {
        let broker = |source| DeadLetterError::Broker { queue: queue.clone(), source };
        let Ok(name) = ShortString::try_new(queue.as_str()) else {
            depths.push(QueueDepth { queue, messages: None, consumers: None });
            continue;
        };
        // A missing queue closes the channel it was asked on: one channel per question.
        let asked = async {
            let channel = connection.create_channel().await?;
            let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            match channel.queue_declare(name, options, FieldTable::default()).await {
                Ok(declared) => {
                    let _ = channel.close(200, "asked".into()).await;
                    Ok(Some((declared.message_count(), declared.consumer_count())))
                }
                Err(error) if error.is_amqp_soft_error() => Ok(None),
                Err(error) => Err(error),
            }
        };
        match asked.await {
            Ok(found) => depths.push(QueueDepth {
                queue,
                messages: found.map(|(messages, _)| messages),
                consumers: found.map(|(_, consumers)| consumers),
            }),
            Err(source) => {
                failed = Some(broker(source));
                break;
            }
        }
    }
    let _ = connection.close(200, "depths read".into()).await;
    failed.map_or(Ok(depths), Err)
}

/// How many messages each stage's dead-letter queue holds, in pipeline order: unlike
/// [`crate::list_dead_letters`] it takes nothing from a queue and raises no delivery count, so a dashboard
/// may ask every few seconds. A queue that does not exist holds nothing. Messages another client holds
/// unacknowledged at the moment (a listing in progress) are not counted.
///
/// # Errors
/// As [`queue_depths`].
pub async fn count_dead_letters(config: &BusConfig, topology: &Topology) -> Result<Vec<(Stage, u32)>, DeadLetterError> {
    let queues = Stage::ALL.iter().map(|stage| topology.dead_letter_queue(*stage)).collect();
    let depths = depths_of(config, queues).await?;
    Ok(Stage::ALL.into_iter().zip(depths).map(|(stage, depth)| (stage, depth.messages.unwrap_or(0))).collect())
}
